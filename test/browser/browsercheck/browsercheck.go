// Package browsercheck checks, in a real headless Chromium, that an mcp-runtime cannot be
// used across sites: a page on an allowed origin gets a WebSocket ticket with fetch (a real
// CORS preflight), opens `new WebSocket(url+"?ticket=…", "mcp")` and calls a tool; a page on
// a foreign origin can neither get a ticket nor open the WebSocket, with no ticket or with a
// ticket stolen from the allowed page, and its forged simple POST is refused. The runtime
// answers the foreign upgrades 403 before upgrading: the browser sees no open and no
// message, the runtime's counters see nothing reach authentication or the upstream, and the
// stolen ticket still works for its rightful page afterwards.
//
// The check is target-agnostic: Run takes the runtime's URL as a browser would use it, how
// Chromium resolves its host and which certificate it trusts, so the same code checks a
// runtime on 127.0.0.1 and one behind a cluster Service. Chromium (Debian's) is driven by
// playwright-core from test/browser over the DevTools protocol; this package starts it, in a
// process group of its own with a fresh profile, and ends it and removes the profile.
package browsercheck

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Target is the runtime under test and how to reach it.
type Target struct {
	// BaseURL is the runtime's client address as the browser uses it, https://host[:port]
	// with no path, e.g. https://mcp.team-a.svc:443. Its host is what the TLS server name and
	// the Host header carry: the runtime's Host check (its endpoint.publicURL host or
	// origins.allowedHosts) must accept it.
	BaseURL string
	// Path is the MCP endpoint path (endpoint.path), e.g. "/mcp". The WebSocket URL is
	// wss://host[:port]+Path.
	Path string
	// ResolveTo makes Chromium connect to this "ip:port" for BaseURL's host name
	// (--host-resolver-rules="MAP host ip:port"), e.g. a Service's ClusterIP:443, so no
	// /etc/hosts entry or cluster DNS is needed. Empty: the system resolver.
	ResolveTo string
	// TrustSPKI are base64 SHA-256 hashes of SubjectPublicKeyInfos that Chromium accepts
	// despite certificate errors (--ignore-certificate-errors-spki-list): the serving
	// certificate's, for a certificate that does not chain to a system root. SPKIHashes
	// computes them from PEM. Chromium compares them with the chain the server sends, so a
	// CA's hash works only if the server sends the CA certificate too; pin the leaf.
	TrustSPKI []string
	// Token is a bearer token (JWT) the runtime accepts; tickets are issued for its subject.
	Token string
	// Pages serves the allowed and the foreign page (ServePages). Pages.AllowedOrigin must be
	// in the runtime's origins.allowed and Pages.ForeignOrigin must not.
	Pages *Pages
	// MetricsURL, when set, is the runtime's http://host:port/metrics (health listener).
	// Run then reads the counters around each phase and requires, for the foreign page,
	// exactly its 4 requests refused by the Origin check with 403 (preflight, forged POST,
	// two upgrades), no 101, no authentication decision and no JSON-RPC message. Nothing else
	// may use the runtime while Run runs.
	MetricsURL string
	// Tool is called by the allowed page with Arguments; its text content must contain
	// WantText. Zero: the go-sdk everything-server's json_schema_2020_12_tool, which echoes
	// its arguments, with a random name to find in the echo.
	Tool      string
	Arguments map[string]any
	WantText  string
	// Node is the node executable (v20 or later) that runs driver.mjs (Prepare returns one);
	// test/browser's npm project must be installed (npm ci).
	Node string
	// Chromium is the browser executable. Default /usr/bin/chromium (hack/chromium.sh).
	Chromium string
	// Timeout bounds Run. Default 3 minutes.
	Timeout time.Duration
}

// DefaultChromium is where Debian's chromium package puts the browser.
const DefaultChromium = "/usr/bin/chromium"

func (t Target) host() string {
	u, err := url.Parse(t.BaseURL)
	if err != nil {
		return ""
	}
	return u.Host
}

func (t Target) hostname() string {
	u, err := url.Parse(t.BaseURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

func (t Target) wsURL() string { return "wss://" + t.host() + t.Path }

func (t Target) validate() error {
	var errs []error
	u, err := url.Parse(t.BaseURL)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "":
		errs = append(errs, fmt.Errorf("baseURL %q must be https://host[:port]", t.BaseURL))
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.User != nil:
		errs = append(errs, fmt.Errorf("baseURL %q must have no path, query or user info (the path goes in Path)", t.BaseURL))
	}
	if !strings.HasPrefix(t.Path, "/") {
		errs = append(errs, fmt.Errorf("path %q must start with / (the runtime's endpoint.path, e.g. /mcp)", t.Path))
	}
	if t.ResolveTo != "" {
		if host, port, err := net.SplitHostPort(t.ResolveTo); err != nil || net.ParseIP(host) == nil || port == "" {
			errs = append(errs, fmt.Errorf("resolveTo %q must be ip:port (e.g. the Service's ClusterIP:443)", t.ResolveTo))
		}
	}
	for _, h := range t.TrustSPKI {
		if b, err := base64.StdEncoding.DecodeString(h); err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("trustSPKI %q is not a base64 SHA-256 hash (use SPKIHashes)", h))
		}
	}
	if t.Token == "" {
		errs = append(errs, errors.New("token is empty: give a bearer JWT the runtime accepts"))
	}
	if t.Pages == nil || t.Pages.AllowedOrigin == "" || t.Pages.ForeignOrigin == "" {
		errs = append(errs, errors.New("pages is not set: start them with ServePages and allow Pages.AllowedOrigin in the runtime"))
	}
	if t.Node == "" {
		errs = append(errs, errors.New("node is empty: give a node executable (Prepare installs Node 22 and the npm project)"))
	}
	if (t.Tool == "") != (t.WantText == "") {
		errs = append(errs, errors.New("tool and wantText go together: set both, or neither for the everything-server default"))
	}
	return errors.Join(errs...)
}

// SPKIHashes returns the base64 SHA-256 hash of the SubjectPublicKeyInfo of every
// certificate in PEM data, for Target.TrustSPKI.
func SPKIHashes(pemData []byte) ([]string, error) {
	var out []string
	for {
		var b *pem.Block
		b, pemData = pem.Decode(pemData)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing a certificate: %w", err)
		}
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		out = append(out, base64.StdEncoding.EncodeToString(sum[:]))
	}
	if len(out) == 0 {
		return nil, errors.New("no CERTIFICATE block in the PEM data")
	}
	return out, nil
}

// Result is what the browser and the runtime showed. Tickets and tokens never appear in it.
type Result struct {
	// Browser is Chromium's version.
	Browser                      string
	AllowedOrigin, ForeignOrigin string
	// Path is the MCP endpoint path checked.
	Path string
	// Allowed is the allowed page's ticket fetch and MCP session.
	Allowed App
	// Foreign is what the foreign page tried.
	Foreign Foreign
	// Replay is the allowed page redeeming the ticket the foreign page had stolen, after the
	// theft: it works, so the foreign upgrade was refused before the ticket was looked at.
	Replay Session
	// Network has the CDP network events per phase: "allowed", "foreign", "replay".
	Network map[string][]NetEvent
	// Console has the pages' console lines per phase.
	Console map[string][]string
	// Metrics are the counter changes per phase ("allowed", "foreign", "replay"); nil
	// without Target.MetricsURL.
	Metrics map[string]Delta
	Timings Timings
}

// Timings of one Run.
type Timings struct {
	ChromiumStart, Allowed, Foreign, Replay, Total time.Duration
}

// TicketFetch is a page's fetch POST /auth/ticket.
type TicketFetch struct {
	OK     bool   `json:"ok"`
	Status int    `json:"status"`
	Ticket string `json:"ticket"`
	Error  string `json:"error"`
	Ms     int64  `json:"ms"`
}

// Forge is the foreign page's no-cors simple POST of a JSON-RPC initialize.
type Forge struct {
	Sent   bool   `json:"sent"`
	Type   string `json:"type"`
	Status int    `json:"status"`
	Error  string `json:"error"`
	Ms     int64  `json:"ms"`
}

// WSAttempt is what a page saw of new WebSocket(url, "mcp").
type WSAttempt struct {
	Events           []string `json:"events"`
	Opened           bool     `json:"opened"`
	Protocol         string   `json:"protocol"`
	Messages         int      `json:"messages"`
	CloseCode        int      `json:"closeCode"`
	CloseReason      string   `json:"closeReason"`
	WasClean         bool     `json:"wasClean"`
	TimedOut         bool     `json:"timedOut"`
	ConstructorError string   `json:"constructorError"`
	Ms               int64    `json:"ms"`
}

// Session is an MCP session a page ran over one WebSocket.
type Session struct {
	Events        []string `json:"events"`
	Opened        bool     `json:"opened"`
	Protocol      string   `json:"protocol"`
	Frames        int      `json:"frames"`
	Notifications int      `json:"notifications"`
	CloseCode     int      `json:"closeCode"`
	CloseReason   string   `json:"closeReason"`
	Error         string   `json:"error"`
	Initialize    *struct {
		ProtocolVersion string `json:"protocolVersion"`
		ServerInfo      struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"serverInfo"`
	} `json:"initialize"`
	Tools      []string `json:"tools"`
	CallResult *struct {
		IsError bool `json:"isError"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	} `json:"callResult"`
	Ms int64 `json:"ms"`
}

// Text is the call result's text content.
func (s Session) Text() string {
	if s.CallResult == nil {
		return ""
	}
	var parts []string
	for _, c := range s.CallResult.Content {
		if c.Type == "text" {
			parts = append(parts, c.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// App is the allowed page's whole flow: ticket, then session.
type App struct {
	Ticket  TicketFetch `json:"ticket"`
	Session *Session    `json:"session"`
}

// Foreign is what the foreign page tried.
type Foreign struct {
	// Ticket is its fetch POST /auth/ticket with the (valid) bearer token.
	Ticket TicketFetch
	// ForgedPost is its no-cors POST of an initialize to the MCP endpoint.
	ForgedPost Forge
	// NoTicket and StolenTicket are its WebSocket upgrades without a ticket and with one
	// issued to the allowed page.
	NoTicket, StolenTicket WSAttempt
}

// Run checks target; see the package comment. The Result is filled as far as the check got,
// also when it returns an error; the error lists every expectation that failed.
func Run(ctx context.Context, t Target) (Result, error) {
	start := time.Now()
	res := Result{Network: map[string][]NetEvent{}, Console: map[string][]string{}}
	if err := t.validate(); err != nil {
		return res, fmt.Errorf("browsercheck target: %w", err)
	}
	if t.Chromium == "" {
		t.Chromium = DefaultChromium
	}
	if t.Timeout <= 0 {
		t.Timeout = 3 * time.Minute
	}
	if t.Tool == "" {
		nonce := make([]byte, 8)
		_, _ = rand.Read(nonce)
		name := "browsercheck-" + hex.EncodeToString(nonce)
		t.Tool, t.WantText = "json_schema_2020_12_tool", name
		t.Arguments = map[string]any{"name": name, "contactMethod": "email", "email": "browsercheck@example.com"}
	}
	if t.Arguments == nil {
		t.Arguments = map[string]any{}
	}
	res.AllowedOrigin, res.ForeignOrigin, res.Path = t.Pages.AllowedOrigin, t.Pages.ForeignOrigin, t.Path
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()

	br, err := startChromium(ctx, t.Chromium, t)
	if err != nil {
		return res, err
	}
	res.Timings.ChromiumStart = time.Since(start)
	err = run(ctx, t, br.cdpURL, &res)
	err = errors.Join(err, br.stop())
	res.Timings.Total = time.Since(start)
	return res, err
}

// pageTimeout bounds one WebSocket attempt or session inside a page.
const pageTimeout = 20 * time.Second

func run(ctx context.Context, t Target, cdpURL string, res *Result) error {
	var counters [4]Counters
	scrape := func(i int) error {
		if t.MetricsURL == "" {
			return nil
		}
		var err error
		counters[i], err = scrapeCounters(ctx, t.MetricsURL)
		return err
	}
	job := func(page string, steps ...step) driverJob {
		url := t.Pages.AllowedOrigin + "/"
		if page == "foreign" {
			url = t.Pages.ForeignOrigin + "/"
		}
		return driverJob{CDPURL: cdpURL, TimeoutMs: (time.Duration(len(steps)+1) * pageTimeout).Milliseconds(),
			Pages: map[string]string{page: url}, Steps: steps}
	}
	record := func(phase, page string, out *driverOutput) {
		if out == nil {
			return
		}
		if out.Browser != "" {
			res.Browser = out.Browser
		}
		res.Network[phase] = out.Network[page]
		res.Console[phase] = out.Console[page]
	}
	base, ws, timeoutMs := t.BaseURL, t.wsURL(), pageTimeout.Milliseconds()

	if err := scrape(0); err != nil {
		return err
	}
	// Phase 1, allowed page: the app's flow, then one more ticket, which the attacker steals.
	t0 := time.Now()
	var stolen TicketFetch
	out, err := runDriver(ctx, t.Node, job("allowed",
		step{Page: "allowed", Fn: "app", Args: []any{base, t.Token, ws, t.Tool, t.Arguments, timeoutMs}},
		step{Page: "allowed", Fn: "getTicket", Args: []any{base, t.Token}},
	), &res.Allowed, &stolen)
	res.Timings.Allowed = time.Since(t0)
	record("allowed", "allowed", out)
	if err != nil {
		return fmt.Errorf("allowed page: %w", err)
	}
	if !res.Allowed.Ticket.OK || !stolen.OK {
		return fmt.Errorf("allowed page: fetch POST %s/auth/ticket failed (status %d, %s)%s", base,
			res.Allowed.Ticket.Status, res.Allowed.Ticket.Error, fetchHint(res.Network["allowed"], t))
	}
	if err := scrape(1); err != nil {
		return err
	}

	// Phase 2, foreign page: ticket, forged POST, upgrade without and with the stolen ticket.
	t0 = time.Now()
	forged := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"csrf","version":"1"}}}`
	out, err = runDriver(ctx, t.Node, job("foreign",
		step{Page: "foreign", Fn: "getTicket", Args: []any{base, t.Token}},
		step{Page: "foreign", Fn: "forgePost", Args: []any{base + t.Path, forged}},
		step{Page: "foreign", Fn: "tryOpen", Args: []any{ws, timeoutMs}},
		step{Page: "foreign", Fn: "tryOpen", Args: []any{ws + "?ticket=" + url.QueryEscape(stolen.Ticket), timeoutMs}},
	), &res.Foreign.Ticket, &res.Foreign.ForgedPost, &res.Foreign.NoTicket, &res.Foreign.StolenTicket)
	res.Timings.Foreign = time.Since(t0)
	record("foreign", "foreign", out)
	if res.Foreign.Ticket.Ticket != "" {
		res.Foreign.Ticket.Ticket = "(redacted)"
	}
	if err != nil {
		return fmt.Errorf("foreign page: %w", err)
	}
	if err := scrape(2); err != nil {
		return err
	}

	// Phase 3, allowed page again: the stolen ticket was never consumed.
	t0 = time.Now()
	out, err = runDriver(ctx, t.Node, job("allowed",
		step{Page: "allowed", Fn: "session", Args: []any{ws + "?ticket=" + url.QueryEscape(stolen.Ticket), t.Tool, t.Arguments, timeoutMs}},
	), &res.Replay)
	res.Timings.Replay = time.Since(t0)
	record("replay", "allowed", out)
	if err != nil {
		return fmt.Errorf("replay on the allowed page: %w", err)
	}
	if err := scrape(3); err != nil {
		return err
	}
	if t.MetricsURL != "" {
		res.Metrics = map[string]Delta{
			"allowed": counters[1].Sub(counters[0]),
			"foreign": counters[2].Sub(counters[1]),
			"replay":  counters[3].Sub(counters[2]),
		}
	}
	return check(t, res)
}

// fetchHint says why Chromium failed a fetch of /auth/ticket and which input to fix.
func fetchHint(events []NetEvent, t Target) string {
	for _, e := range events {
		if e.Ev != "failed" {
			continue
		}
		why := e.ErrorText
		if e.CorsError != "" {
			why += " " + e.CorsError
		}
		switch {
		case e.CorsError != "":
			return fmt.Sprintf("; Chromium: %s: is %s in the runtime's origins.allowed?", why, t.Pages.AllowedOrigin)
		case strings.Contains(e.ErrorText, "ERR_CERT"):
			return fmt.Sprintf("; Chromium: %s: TrustSPKI must hold the SPKI hash of the certificate the runtime serves (its leaf)", why)
		case strings.Contains(e.ErrorText, "ERR_NAME_NOT_RESOLVED"), strings.Contains(e.ErrorText, "ERR_CONNECTION"), strings.Contains(e.ErrorText, "ERR_ADDRESS"):
			return fmt.Sprintf("; Chromium: %s: check ResolveTo %q (Chromium maps %s to it)", why, t.ResolveTo, t.hostname())
		default:
			return "; Chromium: " + why
		}
	}
	return ""
}
