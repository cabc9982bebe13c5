package browsercheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"time"
)

// Dir is test/browser: the npm project (playwright-core) and driver.mjs.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), ".."))
}

// step is one call of window.browsercheck[Fn](...Args) on the page named Page.
type step struct {
	Page string `json:"page"`
	Fn   string `json:"fn"`
	Args []any  `json:"args"`
}

type driverJob struct {
	CDPURL    string            `json:"cdpURL"`
	TimeoutMs int64             `json:"timeoutMs"`
	Pages     map[string]string `json:"pages"`
	Steps     []step            `json:"steps"`
}

// NetEvent is one network event Chromium reported over CDP for a page (tickets redacted).
type NetEvent struct {
	// Ev: request, response, failed, ws-created, ws-handshake-request, ws-handshake-response,
	// ws-frame-sent, ws-frame-received, ws-frame-error, ws-closed.
	Ev            string `json:"ev"`
	ID            string `json:"id"`
	Method        string `json:"method,omitempty"`
	URL           string `json:"url,omitempty"`
	Type          string `json:"type,omitempty"`
	Status        int    `json:"status,omitempty"`
	ErrorText     string `json:"errorText,omitempty"`
	CorsError     string `json:"corsError,omitempty"`
	BlockedReason string `json:"blockedReason,omitempty"`
	Origin        string `json:"origin,omitempty"`
}

type driverOutput struct {
	OK      bool              `json:"ok"`
	Error   string            `json:"error"`
	Browser string            `json:"browser"`
	Origins map[string]string `json:"origins"`
	Steps   []struct {
		Page   string          `json:"page"`
		Fn     string          `json:"fn"`
		Result json.RawMessage `json:"result"`
		Ms     int64           `json:"ms"`
	} `json:"steps"`
	Network map[string][]NetEvent `json:"network"`
	Console map[string][]string   `json:"console"`
}

// runDriver runs driver.mjs with node against the Chromium at cdpURL, each page in a new
// browser context, and decodes the step results into results (one pointer per step).
func runDriver(ctx context.Context, node string, job driverJob, results ...any) (*driverOutput, error) {
	if len(results) != len(job.Steps) {
		return nil, fmt.Errorf("internal: %d steps, %d results", len(job.Steps), len(results))
	}
	timeout := time.Duration(job.TimeoutMs)*time.Millisecond + 15*time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	in, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, node, "driver.mjs")
	cmd.Dir = Dir()
	cmd.Stdin = bytes.NewReader(in)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var out driverOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		var ee *exec.Error
		if errors.As(runErr, &ee) {
			return nil, fmt.Errorf("running node %s: %w", node, runErr)
		}
		return nil, fmt.Errorf("driver.mjs printed no result (exit: %v); is test/browser's npm project installed (npm ci)? stdout: %.2000s\nstderr: %.4000s", runErr, redact(stdout.String()), redact(stderr.String()))
	}
	if !out.OK {
		return &out, fmt.Errorf("driver.mjs failed: %s\nstderr: %.4000s", out.Error, redact(stderr.String()))
	}
	if len(out.Steps) != len(results) {
		return &out, fmt.Errorf("driver.mjs ran %d of %d steps", len(out.Steps), len(results))
	}
	for i, r := range results {
		if err := json.Unmarshal(out.Steps[i].Result, r); err != nil {
			return &out, fmt.Errorf("step %s on the %s page: decoding %.500s: %w", out.Steps[i].Fn, out.Steps[i].Page, redact(string(out.Steps[i].Result)), err)
		}
	}
	return &out, nil
}

// ticketText matches a runtime ticket ("mt1.<claims>.<mac>").
var ticketText = regexp.MustCompile(`mt1\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+`)

// redact hides tickets in driver output that goes into an error.
func redact(s string) string { return ticketText.ReplaceAllString(s, "mt1.REDACTED") }
