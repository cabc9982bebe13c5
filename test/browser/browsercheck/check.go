package browsercheck

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// failures collects the expectations a Result did not meet.
type failures []string

// expect records the message unless ok, and returns ok.
func (f *failures) expect(ok bool, format string, args ...any) bool {
	if !ok {
		*f = append(*f, fmt.Sprintf(format, args...))
	}
	return ok
}

// check holds res to what a runtime that stops cross-site use must show.
func check(t Target, res *Result) error {
	var f failures
	checkAllowed(&f, t, res)
	checkForeign(&f, t, res)
	checkSession(&f, "replay: the allowed page redeeming the ticket the foreign page had stolen", t, &res.Replay)
	if ws := websockets(res.Network["replay"]); f.expect(len(ws) == 1, "replay: Chromium reported %d WebSockets, want 1", len(ws)) {
		f.expect(ws[0].status == 101, "replay: the upgrade was answered %d, want 101", ws[0].status)
	}
	if res.Metrics != nil {
		checkMetrics(&f, res.Metrics)
	}
	if len(f) == 0 {
		return nil
	}
	return errors.New("browser check failed:\n- " + strings.Join(f, "\n- "))
}

func checkAllowed(f *failures, t Target, res *Result) {
	a := res.Allowed
	f.expect(a.Ticket.OK && a.Ticket.Status == 200, "allowed page: fetch POST /auth/ticket got status %d (%s), want 200 with a ticket", a.Ticket.Status, a.Ticket.Error)
	net := res.Network["allowed"]
	pre := responses(net, "Preflight", "/auth/ticket")
	f.expect(len(pre) > 0 && pre[0]/100 == 2, "allowed page: Chromium's CORS preflight of POST /auth/ticket was answered %v, want 2xx (the runtime answers preflights of allowed origins)", pre)
	if a.Session == nil {
		*f = append(*f, "allowed page: no WebSocket session was tried (no ticket)")
		return
	}
	checkSession(f, "allowed page", t, a.Session)
	ws := websockets(net)
	if f.expect(len(ws) == 1, "allowed page: Chromium reported %d WebSockets, want 1", len(ws)) {
		f.expect(ws[0].origin == t.Pages.AllowedOrigin, "allowed page: the upgrade carried Origin %q, want %q", ws[0].origin, t.Pages.AllowedOrigin)
		f.expect(ws[0].status == 101, "allowed page: the upgrade was answered %d, want 101", ws[0].status)
		f.expect(ws[0].sent >= 4 && ws[0].received >= 3, "allowed page: %d frames sent, %d received; want one per JSON-RPC message (4 sent, 3 received)", ws[0].sent, ws[0].received)
	}
}

// checkSession: a WebSocket with subprotocol mcp that initialized, listed the tool, called it
// and got WantText back, then closed normally.
func checkSession(f *failures, who string, t Target, s *Session) {
	f.expect(s.Opened && s.Protocol == "mcp", "%s: the WebSocket did not open with subprotocol mcp (opened %v, protocol %q, events %v, close %d %q)", who, s.Opened, s.Protocol, s.Events, s.CloseCode, s.CloseReason)
	f.expect(s.Error == "", "%s: %s", who, s.Error)
	f.expect(s.Initialize != nil && s.Initialize.ServerInfo.Name != "", "%s: no initialize result with the upstream's serverInfo", who)
	f.expect(slices.Contains(s.Tools, t.Tool), "%s: tools/list does not list %s (got %d tools)", who, t.Tool, len(s.Tools))
	f.expect(s.CallResult != nil && !s.CallResult.IsError && strings.Contains(s.Text(), t.WantText), "%s: tools/call %s returned %q, want text containing %q", who, t.Tool, s.Text(), t.WantText)
	f.expect(s.CloseCode == 1000, "%s: the socket closed with %d %q, want 1000 after the call", who, s.CloseCode, s.CloseReason)
}

func checkForeign(f *failures, t Target, res *Result) {
	fo := res.Foreign
	net := res.Network["foreign"]

	f.expect(!fo.Ticket.OK && fo.Ticket.Status == 0 && strings.Contains(fo.Ticket.Error, "TypeError"),
		"foreign page: fetch POST /auth/ticket must fail with a TypeError (CORS), got ok=%v status %d %q", fo.Ticket.OK, fo.Ticket.Status, fo.Ticket.Error)
	pre := responses(net, "Preflight", "/auth/ticket")
	f.expect(len(pre) == 1 && pre[0] == 403, "foreign page: the CORS preflight of POST /auth/ticket was answered %v, want one 403", pre)
	f.expect(len(responses(net, "Fetch", "/auth/ticket")) == 0, "foreign page: the POST /auth/ticket itself was sent and answered; the preflight must have stopped it")
	f.expect(corsFailure(net, "/auth/ticket") != "", "foreign page: Chromium reported no CORS error for the ticket fetch")

	f.expect(fo.ForgedPost.Sent && fo.ForgedPost.Type == "opaque", "foreign page: the forged no-cors POST was not sent (%+v)", fo.ForgedPost)
	posts := responses(net, "Fetch", t.Path)
	f.expect(len(posts) == 1 && posts[0] == 403, "foreign page: the forged POST %s was answered %v, want 403 from the Origin check", t.Path, posts)

	ws := websockets(net)
	if !f.expect(len(ws) == 2, "foreign page: Chromium reported %d WebSockets, want 2", len(ws)) {
		return
	}
	for i, a := range []struct {
		name string
		page WSAttempt
	}{{"the upgrade without a ticket", fo.NoTicket}, {"the upgrade with the stolen ticket", fo.StolenTicket}} {
		who := "foreign page: " + a.name
		p := a.page
		f.expect(!p.Opened && p.Messages == 0, "%s: the WebSocket opened (protocol %q, %d messages): cross-site WebSocket hijacking is possible", who, p.Protocol, p.Messages)
		f.expect(!p.TimedOut && slices.Equal(p.Events, []string{"error", "close"}) && p.CloseCode == 1006,
			"%s: the page saw %v, close %d (timed out %v); want error, close 1006", who, p.Events, p.CloseCode, p.TimedOut)
		w := ws[i]
		f.expect(w.origin == t.Pages.ForeignOrigin, "%s: the handshake carried Origin %q, want %q", who, w.origin, t.Pages.ForeignOrigin)
		f.expect(w.status != 101 && strings.Contains(w.frameError, "403"), "%s: Chromium saw status %d, error %q; want the handshake refused with 403 before any upgrade", who, w.status, w.frameError)
		f.expect(w.sent == 0 && w.received == 0, "%s: %d frames sent, %d received over a refused socket", who, w.sent, w.received)
	}
	f.expect(strings.Contains(ws[1].url, "ticket="), "foreign page: the second upgrade did not carry the stolen ticket (%s)", ws[1].url)
}

// checkMetrics: the runtime's own counters agree with what the browser saw.
func checkMetrics(f *failures, m map[string]Delta) {
	const (
		httpReq  = "mcp_runtime_http_requests_total"
		rpc      = "mcp_runtime_rpc_requests_total"
		authDec  = "mcp_runtime_auth_decisions_total"
		rejected = "mcp_runtime_origin_rejections_total"
	)
	for _, phase := range []string{"allowed", "replay"} {
		d := m[phase]
		f.expect(d.Sum(httpReq, "code", "101") == 1, "metrics, %s: %v upgrades (101), want 1", phase, d.Sum(httpReq, "code", "101"))
		f.expect(d.Sum(authDec, "method", "ticket", "outcome", "allow") == 1, "metrics, %s: %v tickets redeemed, want 1", phase, d.Sum(authDec, "method", "ticket", "outcome", "allow"))
		f.expect(d.Sum(rpc, "transport", "websocket", "method", "tools/call", "outcome", "ok") == 1, "metrics, %s: %v tools/call over WebSocket, want 1", phase, d.Sum(rpc, "transport", "websocket", "method", "tools/call", "outcome", "ok"))
	}
	d := m["foreign"]
	f.expect(d.Sum(rejected, "reason", "origin") == 4, "metrics, foreign: %v requests refused by the Origin check, want 4 (preflight, forged POST, 2 upgrades)", d.Sum(rejected, "reason", "origin"))
	for _, method := range []string{"GET", "OPTIONS", "POST"} {
		want := map[string]float64{"GET": 2, "OPTIONS": 1, "POST": 1}[method]
		f.expect(d.Sum(httpReq, "code", "403", "method", method) == want, "metrics, foreign: %v %s answered 403, want %v", d.Sum(httpReq, "code", "403", "method", method), method, want)
	}
	f.expect(d.Sum(httpReq, "code", "101") == 0, "metrics, foreign: %v upgrades (101), want none", d.Sum(httpReq, "code", "101"))
	f.expect(d.Sum(authDec) == 0, "metrics, foreign: %v authentication decisions, want none (refused before authentication)", d.Sum(authDec))
	f.expect(d.Sum(rpc) == 0, "metrics, foreign: %v JSON-RPC messages handled, want none (nothing reached the upstream)", d.Sum(rpc))
}

// responses are the statuses of responses of CDP resource type typ whose URL ends in suffix.
func responses(events []NetEvent, typ, suffix string) []int {
	var out []int
	for _, e := range events {
		if e.Ev == "response" && e.Type == typ && strings.HasSuffix(strings.SplitN(e.URL, "?", 2)[0], suffix) {
			out = append(out, e.Status)
		}
	}
	return out
}

// corsFailure is the CORS error Chromium reported for a request to a URL ending in suffix.
func corsFailure(events []NetEvent, suffix string) string {
	urls := map[string]string{}
	for _, e := range events {
		if e.Ev == "request" {
			urls[e.ID] = e.URL
		}
		if e.Ev == "failed" && e.CorsError != "" && strings.HasSuffix(urls[e.ID], suffix) {
			return e.CorsError
		}
	}
	return ""
}

// wsSeen is one WebSocket as Chromium's network layer saw it.
type wsSeen struct {
	url, origin, frameError string
	status, sent, received  int
}

// websockets are a page's WebSockets in creation order.
func websockets(events []NetEvent) []*wsSeen {
	var order []*wsSeen
	byID := map[string]*wsSeen{}
	for _, e := range events {
		w := byID[e.ID]
		if e.Ev == "ws-created" {
			w = &wsSeen{url: e.URL}
			byID[e.ID] = w
			order = append(order, w)
		}
		if w == nil {
			continue
		}
		switch e.Ev {
		case "ws-handshake-request":
			w.origin = e.Origin
		case "ws-handshake-response":
			w.status = e.Status
		case "ws-frame-sent":
			w.sent++
		case "ws-frame-received":
			w.received++
		case "ws-frame-error":
			w.frameError = e.ErrorText
		}
	}
	return order
}

// Summary is a few lines on what the browser and the runtime showed, for test logs.
func (r Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Chromium %s; allowed %s, foreign %s\n", r.Browser, r.AllowedOrigin, r.ForeignOrigin)
	if s := r.Allowed.Session; s != nil {
		fmt.Fprintf(&b, "allowed: ticket %d; preflight %v; ws %q, server %s, %d tools, call -> %q, close %d\n",
			r.Allowed.Ticket.Status, responses(r.Network["allowed"], "Preflight", "/auth/ticket"), s.Protocol, serverName(s), len(s.Tools), s.Text(), s.CloseCode)
	}
	fo := r.Foreign
	fmt.Fprintf(&b, "foreign: ticket fetch %q (preflight %v, CORS %s); forged POST answered %v\n",
		fo.Ticket.Error, responses(r.Network["foreign"], "Preflight", "/auth/ticket"), corsFailure(r.Network["foreign"], "/auth/ticket"),
		responses(r.Network["foreign"], "Fetch", r.Path))
	ws := websockets(r.Network["foreign"])
	for i, a := range []WSAttempt{fo.NoTicket, fo.StolenTicket} {
		name := []string{"no ticket", "stolen ticket"}[i]
		handshake := ""
		if i < len(ws) {
			handshake = ws[i].frameError
		}
		fmt.Fprintf(&b, "foreign ws (%s): page events %v, close %d, opened %v, messages %d; Chromium: %q\n", name, a.Events, a.CloseCode, a.Opened, a.Messages, handshake)
	}
	fmt.Fprintf(&b, "replay of the stolen ticket on the allowed page: opened %v, call -> %q\n", r.Replay.Opened, r.Replay.Text())
	for _, phase := range []string{"allowed", "foreign", "replay"} {
		if d, ok := r.Metrics[phase]; ok {
			fmt.Fprintf(&b, "metrics %s: %s\n", phase, d)
		}
	}
	t := r.Timings
	fmt.Fprintf(&b, "timings: chromium start %v, allowed %v, foreign %v, replay %v, total %v",
		t.ChromiumStart.Round(1e6), t.Allowed.Round(1e6), t.Foreign.Round(1e6), t.Replay.Round(1e6), t.Total.Round(1e6))
	return b.String()
}

func serverName(s *Session) string {
	if s.Initialize == nil {
		return ""
	}
	return s.Initialize.ServerInfo.Name
}

// String lists the series of d, sorted.
func (d Delta) String() string {
	parts := make([]string, 0, len(d))
	for k, v := range d {
		parts = append(parts, fmt.Sprintf("%s %+g", strings.TrimPrefix(k, "mcp_runtime_"), v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
