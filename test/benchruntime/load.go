package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const protocolVersion = "2025-11-25"

// benchTool is the everything-server's JSON Schema 2020-12 tool: its inputSchema has $ref,
// allOf/anyOf and if/then/else, so argument validation does real work on both sides.
const benchTool = "json_schema_2020_12_tool"

var benchArgs = `{"name":"bench","contactMethod":"email","email":"bench@example.com","address":{"street":"1 Main St","city":"Springfield"}}`

// maxResponse bounds every response body the load generator reads.
const maxResponse = 1 << 20

// target is one thing under load.
type target struct {
	key, label string
	url        string // the MCP endpoint
	tls        bool
	header     http.Header // added to every request (Authorization, Origin)
	proc       *proc       // process whose CPU is the hop's cost (nil: none)
	upstream   func() int  // pid of the MCP server behind it
}

// newTransport is a keep-alive HTTP/1.1 transport sized for conc workers: Go's default
// MaxIdleConnsPerHost of 2 would make most workers redial.
func newTransport(t *target, conc int, pk *pki) *http.Transport {
	tr := &http.Transport{
		MaxIdleConns:        conc + 16,
		MaxIdleConnsPerHost: conc + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	if t.tls {
		tr.TLSClientConfig = &tls.Config{RootCAs: pk.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	}
	return tr
}

// errClass sorts failures so a report can tell truncated streams from refusals.
type errClass int

const (
	errNone      errClass = iota
	errTransport          // the request could not be sent or no response header came
	errTruncated          // the body broke off or was not a complete JSON-RPC message
	errStatus             // an HTTP status other than 200
	errRPC                // a JSON-RPC error or a tool error (isError)
	numErrClasses
)

var errClassNames = [numErrClasses]string{"", "transport", "truncated", "status", "rpc"}

type classified struct {
	class errClass
	err   error
}

func (c *classified) Error() string { return errClassNames[c.class] + ": " + c.err.Error() }

func fail(c errClass, format string, a ...any) error {
	return &classified{class: c, err: fmt.Errorf(format, a...)}
}

func classOf(err error) errClass {
	var c *classified
	if errors.As(err, &c) {
		return c.class
	}
	return errTransport
}

// session is one Streamable HTTP MCP session.
type session struct {
	t      *target
	client *http.Client
	sid    string
	id     int64
}

// openSession runs initialize → Mcp-Session-Id → notifications/initialized.
func openSession(ctx context.Context, t *target, client *http.Client) (*session, error) {
	s := &session{t: t, client: client}
	s.id++
	body := `{"jsonrpc":"2.0","id":` + strconv.FormatInt(s.id, 10) + `,"method":"initialize","params":{"protocolVersion":"` + protocolVersion + `","capabilities":{},"clientInfo":{"name":"benchruntime","version":"1"}}}`
	hdr, err := s.rpc(ctx, body, s.id)
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	if s.sid = hdr.Get("Mcp-Session-Id"); s.sid == "" {
		return nil, errors.New("initialize: no Mcp-Session-Id")
	}
	resp, err := s.do(ctx, http.MethodPost, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if err != nil {
		return nil, fmt.Errorf("notifications/initialized: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("notifications/initialized: HTTP %d", resp.StatusCode)
	}
	return s, nil
}

// callTool sends one tools/call and checks its answer.
func (s *session) callTool(ctx context.Context) error {
	s.id++
	body := `{"jsonrpc":"2.0","id":` + strconv.FormatInt(s.id, 10) + `,"method":"tools/call","params":{"name":"` + benchTool + `","arguments":` + benchArgs + `}}`
	_, err := s.rpc(ctx, body, s.id)
	return err
}

// close ends the session (DELETE), so upstream sessions do not pile up across cells.
func (s *session) close(ctx context.Context) {
	if resp, err := s.do(ctx, http.MethodDelete, ""); err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
		_ = resp.Body.Close()
	}
}

func (s *session) do(ctx context.Context, method, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.t.url, bytes.NewBufferString(body))
	if err != nil {
		return nil, err
	}
	for k, v := range s.t.header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.sid != "" {
		req.Header.Set("Mcp-Session-Id", s.sid)
		req.Header.Set("Mcp-Protocol-Version", protocolVersion)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fail(errTransport, "%w", err)
	}
	return resp, nil
}

// rpc posts a request and checks that a complete success response with id wantID came
// back, whether as JSON or as an SSE stream.
func (s *session) rpc(ctx context.Context, body string, wantID int64) (http.Header, error) {
	resp, err := s.do(ctx, http.MethodPost, body)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode != http.StatusOK {
		return nil, fail(errStatus, "HTTP %d: %.200s", resp.StatusCode, b)
	}
	if rerr != nil {
		return nil, fail(errTruncated, "reading the body after %d bytes: %w", len(b), rerr)
	}
	return resp.Header, checkResponse(b, wantID)
}

// rpcMessage is the part of a JSON-RPC response the check needs.
type rpcMessage struct {
	ID     json.RawMessage `json:"id"`
	Result *struct {
		IsError bool `json:"isError"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// checkResponse finds the response to wantID in a JSON body or an SSE stream. A stream
// that stops mid-event, or a data payload that is not whole JSON, is a truncation.
func checkResponse(body []byte, wantID int64) error {
	var payloads [][]byte
	trimmed := bytes.TrimLeft(body, " \r\n\t")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		payloads = append(payloads, trimmed)
	} else {
		if len(body) > 0 && !bytes.HasSuffix(body, []byte("\n\n")) && !bytes.HasSuffix(body, []byte("\r\n\r\n")) {
			return fail(errTruncated, "SSE stream ends mid-event after %d bytes", len(body))
		}
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 0, 4096), maxResponse)
		for sc.Scan() {
			if d, ok := bytes.CutPrefix(sc.Bytes(), []byte("data:")); ok {
				payloads = append(payloads, bytes.Clone(bytes.TrimPrefix(d, []byte(" "))))
			}
		}
	}
	want := strconv.FormatInt(wantID, 10)
	for _, p := range payloads {
		var m rpcMessage
		if err := json.Unmarshal(p, &m); err != nil {
			return fail(errTruncated, "payload is not whole JSON: %v", err)
		}
		if string(m.ID) != want {
			continue // a notification or another message on the stream
		}
		switch {
		case m.Error != nil:
			return fail(errRPC, "JSON-RPC error %d: %s", m.Error.Code, m.Error.Message)
		case m.Result == nil:
			return fail(errRPC, "response without result")
		case m.Result.IsError:
			return fail(errRPC, "tool returned isError: %.200s", p)
		}
		return nil
	}
	if len(body) == 0 {
		return fail(errTruncated, "empty body")
	}
	return fail(errRPC, "no response with id %s in %d bytes", want, len(body))
}

// cellResult is one target at one concurrency for one round.
type cellResult struct {
	target    string
	conc      int
	round     int
	n         int
	elapsed   time.Duration
	rps       float64
	p50, p99  time.Duration
	errs      [numErrClasses]int
	firstErr  string
	hopCPU    float64 // µs of CPU per request in the proxy/runtime process (NaN: none)
	upCPU     float64 // µs of CPU per request in the MCP server
	loadCPU   float64 // µs of CPU per request in this load generator
	setupFail string
}

func (c cellResult) errorCount() int {
	n := 0
	for _, e := range c.errs[1:] {
		n += e
	}
	return n
}

// runCell drives tools/call at fixed concurrency: every worker opens its session, then
// warmup passes unmeasured, then duration is measured (requests, latency, CPU deltas).
func runCell(ctx context.Context, t *target, pk *pki, conc int, warmup, duration time.Duration) cellResult {
	res := cellResult{target: t.key, conc: conc}
	tr := newTransport(t, conc, pk)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	sessions := make([]*session, conc)
	var wg sync.WaitGroup
	var setupErr atomic.Value
	for i := range sessions {
		wg.Go(func() {
			s, err := openSession(ctx, t, client)
			if err != nil {
				setupErr.Store(err.Error())
				return
			}
			sessions[i] = s
		})
	}
	wg.Wait()
	defer func() {
		for _, s := range sessions {
			if s != nil {
				wg.Go(func() { s.close(ctx) })
			}
		}
		wg.Wait()
	}()
	if e, _ := setupErr.Load().(string); e != "" {
		res.setupFail = e
		return res
	}

	// phase: 0 warmup, 1 measuring, 2 stop.
	var phase atomic.Int32
	lat := make([][]time.Duration, conc)
	errs := make([][numErrClasses]int, conc)
	firstErr := make([]string, conc)
	for i, s := range sessions {
		wg.Go(func() {
			l := make([]time.Duration, 0, 4096)
			for {
				start := time.Now()
				err := s.callTool(ctx)
				d := time.Since(start)
				ph := phase.Load()
				if ph == 2 || ctx.Err() != nil {
					break
				}
				// Errors count in warmup too: a cell that failed anywhere says so.
				if err != nil {
					errs[i][classOf(err)]++
					if firstErr[i] == "" {
						firstErr[i] = err.Error()
					}
					continue
				}
				if ph == 1 {
					l = append(l, d)
				}
			}
			lat[i] = l
		})
	}
	sleep(ctx, warmup)
	self := selfPID()
	hop0, up0, load0 := procCPU(t.proc), pidCPU(t.upstream), cpuTime(self)
	start := time.Now()
	phase.Store(1)
	sleep(ctx, duration)
	phase.Store(2)
	res.elapsed = time.Since(start)
	hop1, up1, load1 := procCPU(t.proc), pidCPU(t.upstream), cpuTime(self)
	wg.Wait()

	var all []time.Duration
	for i := range lat {
		all = append(all, lat[i]...)
		for c := range errs[i] {
			res.errs[c] += errs[i][c]
		}
		if res.firstErr == "" {
			res.firstErr = firstErr[i]
		}
	}
	res.n = len(all)
	res.rps = float64(res.n) / res.elapsed.Seconds()
	res.p50, res.p99 = percentile(all, 0.50), percentile(all, 0.99)
	perReq := func(d time.Duration) float64 {
		if res.n == 0 || d < 0 {
			return nan
		}
		return float64(d.Microseconds()) / float64(res.n)
	}
	res.hopCPU = nan
	if t.proc != nil {
		res.hopCPU = perReq(hop1 - hop0)
	}
	res.upCPU = perReq(up1 - up0)
	res.loadCPU = perReq(load1 - load0)
	return res
}

// percentile of unsorted samples (sorted in place), nearest rank.
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	if !slices.IsSorted(d) {
		slices.Sort(d)
	}
	i := int(q*float64(len(d))+0.5) - 1
	return d[max(0, min(i, len(d)-1))]
}

func procCPU(p *proc) time.Duration {
	if p == nil {
		return 0
	}
	return cpuTime(p.pid())
}

func pidCPU(f func() int) time.Duration {
	if f == nil {
		return 0
	}
	if pid := f(); pid > 0 {
		return cpuTime(pid)
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
