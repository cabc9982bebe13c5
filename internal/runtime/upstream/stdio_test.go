package upstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/testutil"
)

func childPID(u Upstream) int {
	m := u.(*shared).m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.child == nil {
		return 0
	}
	return m.child.pid
}

// alive reports whether pid runs (a zombie waiting to be reaped does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	return procState(b) != "Z"
}

func procState(stat []byte) string {
	rest := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(rest) == 0 {
		return ""
	}
	return rest[0]
}

func TestSharedChildMultiplexesConcurrentSessionsWithCollidingIDs(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	argv, log := teeCommand(t, everythingServer(t))
	u, err := NewStdio(testConfig(), argv, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)

	// Every session uses the same ids; the escaped string "\u0031" is the string "1" and
	// must come back exactly as written.
	const calls = 8
	idFormats := []func(j int) string{
		func(j int) string { return fmt.Sprint(j) },
		func(j int) string { return fmt.Sprint(j) },
		func(j int) string { return fmt.Sprintf(`"%d"`, j) },
		func(j int) string { return fmt.Sprintf(`"\u003%d"`, j) },
	}
	clients := make([]*client, len(idFormats))
	for i := range clients {
		clients[i] = newClient(t, u)
		clients[i].send(`{"jsonrpc":"2.0","id":` + idFormats[i](0) + `,"method":"initialize","params":` + initializeParams + `}`)
		clients[i].send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	}
	var first map[string]any
	for i, c := range clients {
		resp := c.await(responseTo(idFormats[i](0)), 5*time.Second)
		g.Expect(resp).To(HaveKeyWithValue("result", HaveKeyWithValue("serverInfo", HaveKeyWithValue("name", "mcp-conformance-test-server"))))
		if first == nil {
			first = resp
		}
		g.Expect(resp["result"]).To(Equal(first["result"]), "every session sees the cached initialize result")
	}

	// A client that asks for an older revision is answered in that revision.
	older := newClient(t, u)
	older.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"old","version":"1"}}}`)
	g.Expect(older.await(responseTo(`1`), 5*time.Second)).To(HaveKeyWithValue("result", HaveKeyWithValue("protocolVersion", "2025-06-18")))
	g.Expect(first).To(HaveKeyWithValue("result", HaveKeyWithValue("protocolVersion", "2025-11-25")))

	var wg sync.WaitGroup
	errs := make(chan error, len(clients)*calls)
	for i, c := range clients {
		for j := 1; j <= calls; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				msg := fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"json_schema_2020_12_tool","arguments":{"name":"s%d-c%d","email":"x@example.com"}}}`, idFormats[i](j), i, j)
				if err := c.s.Send(context.Background(), []byte(msg)); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Send: %v", err)
	}
	for i, c := range clients {
		for j := 1; j <= calls; j++ {
			resp := c.await(responseTo(idFormats[i](j)), 5*time.Second)
			g.Expect(text(resp)).To(ContainSubstring(fmt.Sprintf(`"name":"s%d-c%d"`, i, j)), "session %d call %d got someone else's answer", i, j)
		}
		g.Expect(c.count(func(e *envelope) bool { return e.isResponse() })).To(Equal(calls+1), "no extra responses")
	}

	// The child was initialized once, by the runtime; clients' initialize/initialized
	// never reached it.
	g.Expect(received(log, `"method":"initialize"`)).To(Equal(1))
	g.Expect(received(log, `"method":"notifications/initialized"`)).To(Equal(1))
	g.Expect(received(log, `"method":"tools/call"`)).To(Equal(len(clients) * calls))
}

func TestSharedChildServesOfficialSDKClients(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	u, err := NewStdio(testConfig(), []string{everythingServer(t)}, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runSDKClients(ctx, t, u, 3)
}

// runSDKClients drives n official SDK clients through the upstream: concurrently
// initialize, tools/list, a plain call and a call with progress (each client must see
// only its own progress); then, one client at a time, a call that makes the server ask
// that client for sampling (a server→client request routed back by id).
func runSDKClients(ctx context.Context, t *testing.T, u Upstream, n int) {
	g := NewWithT(t)
	sessions := make([]*mcp.ClientSession, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs, err := sdkSession(ctx, u, i)
			sessions[i] = cs
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		g.Expect(err).NotTo(HaveOccurred())
	}
	for i, cs := range sessions {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_sampling", Arguments: map[string]any{"prompt": "hi"}})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.Content[0].(*mcp.TextContent).Text).To(Equal(fmt.Sprintf("LLM response: answer-%d", i)))
		g.Expect(cs.Close()).To(Succeed())
	}
}

func sdkSession(ctx context.Context, u Upstream, i int) (*mcp.ClientSession, error) {
	s, err := u.NewSession(ctx)
	if err != nil {
		return nil, err
	}
	var progress atomic.Int32
	wantToken := fmt.Sprintf("tok-%d", i)
	var badToken atomic.Value
	c := mcp.NewClient(&mcp.Implementation{Name: fmt.Sprintf("sdk-%d", i), Version: "1"}, &mcp.ClientOptions{
		// Sampling is deprecated in 2026-07-28 but still relayed for 2025-11-25 sessions.
		CreateMessageHandler: func(ctx context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) { //nolint:staticcheck // see above
			answer := &mcp.CreateMessageResult{Model: "m", Role: "assistant", Content: &mcp.TextContent{Text: fmt.Sprintf("answer-%d", i)}} //nolint:staticcheck // see above
			return answer, nil
		},
		ProgressNotificationHandler: func(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
			if req.Params.ProgressToken != wantToken {
				badToken.Store(fmt.Sprint(req.Params.ProgressToken))
			}
			progress.Add(1)
		},
	})
	cs, err := c.Connect(ctx, sessionTransport{s}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		return nil, fmt.Errorf("client %d connect: %w", i, err)
	}
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		return cs, fmt.Errorf("client %d tools/list: %w", i, err)
	}
	if len(tools.Tools) < 10 {
		return cs, fmt.Errorf("client %d: only %d tools listed", i, len(tools.Tools))
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
	if err != nil || len(res.Content) == 0 {
		return cs, fmt.Errorf("client %d test_simple_text: %v", i, err)
	}
	p := &mcp.CallToolParams{Name: "test_tool_with_progress"}
	p.SetProgressToken(wantToken)
	if _, err := cs.CallTool(ctx, p); err != nil {
		return cs, fmt.Errorf("client %d progress call: %w", i, err)
	}
	// The SDK may run notification handlers after the call returned.
	for deadline := time.Now().Add(time.Second); progress.Load() < 3 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := progress.Load(); n != 3 {
		return cs, fmt.Errorf("client %d got %d progress notifications, want 3", i, n)
	}
	if bad := badToken.Load(); bad != nil {
		return cs, fmt.Errorf("client %d got progress for token %v", i, bad)
	}
	return cs, nil
}

func TestChildKilledMidRequestFailsFastAndRestarts(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	var restarts atomic.Int32
	opts := testOptions()
	opts.OnRestart = func() { restarts.Add(1) }
	argv, log := teeCommand(t, everythingServer(t))
	u, err := NewStdio(testConfig(), argv, opts)
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	c := newClient(t, u)
	c.send(`{"jsonrpc":"2.0","id":"init","method":"initialize","params":` + initializeParams + `}`)
	c.await(responseTo(`"init"`), 5*time.Second)

	// test_sampling waits for the client's answer: the request stays in flight.
	c.send(`{"jsonrpc":"2.0","id":"call-1","method":"tools/call","params":{"name":"test_sampling","arguments":{"prompt":"hi"}}}`)
	c.await(method("sampling/createMessage"), 5*time.Second)
	pid := childPID(u)
	g.Expect(syscall.Kill(-pid, syscall.SIGKILL)).To(Succeed())
	killed := time.Now()

	resp := c.await(responseTo(`"call-1"`), time.Second)
	g.Expect(time.Since(killed)).To(BeNumerically("<", time.Second))
	g.Expect(errorCode(resp)).To(BeEquivalentTo(-32603))
	g.Expect(resp).To(HaveKeyWithValue("error", HaveKeyWithValue("message", "upstream process exited; request not completed")))

	g.Eventually(restarts.Load).WithTimeout(3 * time.Second).Should(BeEquivalentTo(1))
	g.Eventually(u.Ready).WithTimeout(5 * time.Second).Should(BeTrue())
	g.Expect(childPID(u)).NotTo(Equal(pid))
	g.Expect(alive(pid)).To(BeFalse())

	// The same session goes on; the new child was re-initialized by the runtime first.
	c.send(`{"jsonrpc":"2.0","id":"call-2","method":"tools/call","params":{"name":"test_simple_text"}}`)
	resp = c.await(responseTo(`"call-2"`), 5*time.Second)
	g.Expect(text(resp)).To(Equal("This is a simple text response for testing."))
	g.Expect(received(log, `"method":"initialize"`)).To(Equal(2))
}

func TestRequestsDuringRestartWaitForReinitialization(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	opts := testOptions()
	opts.Backoff = Backoff{Min: 300 * time.Millisecond, Max: time.Second}
	u, err := NewStdio(testConfig(), []string{everythingServer(t)}, opts)
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	c := newClient(t, u)

	g.Expect(syscall.Kill(-childPID(u), syscall.SIGKILL)).To(Succeed())
	g.Eventually(u.Ready).Should(BeFalse())
	// Sent while no child runs: held until the new child is initialized, then answered.
	c.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_simple_text"}}`)
	resp := c.await(responseTo(`1`), 5*time.Second)
	g.Expect(text(resp)).To(Equal("This is a simple text response for testing."))
}

func TestRequestTimeoutAnswersTheSessionAndCancelsUpstream(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	cfg := testConfig()
	cfg.RequestTimeout.Duration = 400 * time.Millisecond
	argv, log := teeCommand(t, everythingServer(t))
	u, err := NewStdio(cfg, argv, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	c := newClient(t, u)

	start := time.Now()
	c.send(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"test_sampling","arguments":{"prompt":"never answered"}}}`)
	resp := c.await(responseTo(`42`), 2*time.Second)
	g.Expect(time.Since(start)).To(BeNumerically(">=", 400*time.Millisecond))
	g.Expect(errorCode(resp)).To(BeEquivalentTo(-32603))
	g.Expect(resp).To(HaveKeyWithValue("error", HaveKeyWithValue("message", ContainSubstring("timed out"))))
	g.Eventually(func() int { return received(log, `"notifications/cancelled"`) }).Should(Equal(1))
}

func TestCancellationAndServerRequestIDsAreRewritten(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	argv, log := teeCommand(t, everythingServer(t))
	u, err := NewStdio(testConfig(), argv, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	a, b := newClient(t, u), newClient(t, u)

	// Both sessions use id 7; each one's sampling request must reach that session only.
	a.send(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_sampling","arguments":{"prompt":"from-a"}}}`)
	reqA := a.await(method("sampling/createMessage"), 5*time.Second)
	b.send(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_sampling","arguments":{"prompt":"from-b"}}}`)
	reqB := b.await(method("sampling/createMessage"), 5*time.Second)
	g.Expect(fmt.Sprint(reqA["params"])).To(ContainSubstring("from-a"))
	g.Expect(fmt.Sprint(reqB["params"])).To(ContainSubstring("from-b"))

	// b answers its sampling request: mapped back to the child's own id.
	idB := fmt.Sprint(reqB["id"])
	b.send(`{"jsonrpc":"2.0","id":` + idB + `,"result":{"model":"m","role":"assistant","content":{"type":"text","text":"b-answer"}}}`)
	respB := b.await(responseTo(`7`), 5*time.Second)
	g.Expect(text(respB)).To(Equal("LLM response: b-answer"))

	// a cancels its call: the child sees the upstream id, a gets no answer for 7.
	a.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"user"}}`)
	g.Eventually(func() int { return received(log, `"notifications/cancelled"`, `"reason":"user"`) }).Should(Equal(1))
	g.Expect(received(log, `"notifications/cancelled"`, `"requestId":7,`)).To(Equal(0), "the client's id must not reach the child")
	g.Consistently(func() []byte { return a.find(responseTo(`7`)) }).WithTimeout(300 * time.Millisecond).Should(BeNil())
}

func TestNotificationsAreBroadcastOrRoutedBySubscription(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	argv, log := teeCommand(t, everythingServer(t))
	u, err := NewStdio(testConfig(), argv, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	a, b, c := newClient(t, u), newClient(t, u), newClient(t, u)
	logs := func(cl *client) func() int {
		return func() int { return cl.count(method("notifications/message")) }
	}

	// Logging turned on by a and b; the log messages of a's call reach a alone.
	a.send(`{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"info"}}`)
	g.Expect(a.await(responseTo(`1`), 5*time.Second)).To(HaveKey("result"))
	b.send(`{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"info"}}`)
	g.Expect(b.await(responseTo(`1`), 5*time.Second)).To(HaveKey("result"))
	g.Expect(received(log, `"logging/setLevel"`)).To(Equal(1), "the child logs at info already: the relay answers b")
	a.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_tool_with_logging"}}`)
	a.await(responseTo(`2`), 5*time.Second)
	g.Eventually(logs(a)).Should(Equal(3))
	g.Consistently(logs(b)).WithTimeout(200 * time.Millisecond).Should(BeZero())
	g.Expect(logs(c)()).To(BeZero())

	// b asking for errors only gets no info messages, and does not quiet the child for a.
	b.send(`{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"error"}}`)
	g.Expect(b.await(responseTo(`2`), 5*time.Second)).To(HaveKey("result"))
	b.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_tool_with_logging"}}`)
	b.await(responseTo(`3`), 5*time.Second)
	a.send(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"test_tool_with_logging"}}`)
	a.await(responseTo(`5`), 5*time.Second)
	g.Eventually(logs(a)).Should(Equal(6))
	g.Expect(logs(b)()).To(BeZero())
	g.Expect(logs(c)()).To(BeZero())
	g.Expect(received(log, `"logging/setLevel"`)).To(Equal(1))

	// List changes concern every session.
	b.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_trigger_tool_change"}}`)
	b.await(responseTo(`1`), 5*time.Second)
	for _, cl := range []*client{a, b, c} {
		cl.await(method("notifications/tools/list_changed"), 2*time.Second)
	}

	// a and b subscribe to the resource the server updates every 3s; c does not.
	const watched = `{"uri":"test://watched-resource"}`
	a.send(`{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":` + watched + `}`)
	a.await(responseTo(`3`), 5*time.Second)
	b.send(`{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":` + watched + `}`)
	g.Expect(b.await(responseTo(`3`), 5*time.Second)).To(HaveKey("result"))
	g.Expect(received(log, `"resources/subscribe"`)).To(Equal(1), "the second subscription is answered by the relay")
	a.await(method("notifications/resources/updated"), 4*time.Second)
	b.await(method("notifications/resources/updated"), time.Second)
	g.Expect(c.find(method("notifications/resources/updated"))).To(BeNil())

	// a unsubscribing must not stop b's updates: the child is not told.
	a.send(`{"jsonrpc":"2.0","id":4,"method":"resources/unsubscribe","params":` + watched + `}`)
	a.await(responseTo(`4`), 5*time.Second)
	g.Expect(received(log, `"resources/unsubscribe"`)).To(Equal(0))
	// Closing b, the last subscriber, unsubscribes upstream.
	g.Expect(b.s.Close()).To(Succeed())
	g.Eventually(func() int { return received(log, `"resources/unsubscribe"`) }).Should(Equal(1))
}

// unsolicitedLogServer answers tools/call with a URLElicitationRequired error for the URL
// elicitation "el-1" and every other request with an empty result; after answering a ping
// it logs a line of its own and reports el-1 complete: by then no request is in flight.
const unsolicitedLogServer = `while IFS= read -r line; do
  id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
  [ -z "$id" ] && continue
  case "$line" in
  *'"method":"initialize"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"logging":{}},"serverInfo":{"name":"fake","version":"1"}}}\n' "$id" ;;
  *'"method":"tools/call"'*) printf '{"jsonrpc":"2.0","id":%s,"error":{"code":-32042,"message":"URL elicitation required","data":{"elicitations":[{"mode":"url","elicitationId":"el-1","url":"https://example.com/el-1","message":"Sign in"}]}}}\n' "$id" ;;
  *) printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id" ;;
  esac
  case "$line" in
  *'"method":"ping"'*)
    printf '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"error","data":"unsolicited"}}\n'
    printf '{"jsonrpc":"2.0","method":"notifications/elicitation/complete","params":{"elicitationId":"el-1"}}\n'
    printf '{"jsonrpc":"2.0","method":"notifications/tasks/status","params":{"taskId":"t-1","status":"working"}}\n' ;;
  esac
done`

// A log line the shared child writes while no call is in flight is no session's: it is
// dropped. A per-session child's log lines all belong to its one session.
func TestLogMessagesWithNoCallInFlight(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"shared", "per-session"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			g := NewWithT(t)
			cfg := testConfig()
			cfg.SessionMode, cfg.PoolSize = mode, 1
			u := startScript(t, cfg, unsolicitedLogServer)
			a, b := newClient(t, u), newClient(t, u)
			a.send(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)
			g.Expect(a.await(responseTo(`1`), 5*time.Second)).To(HaveKey("result"))
			// The log line, el-1's completion that no session was sent, and a notification
			// the relay has no rule for (not broadcast: it is some call's, not everyone's).
			got := func(cl *client) func() int {
				return func() int {
					return cl.count(method("notifications/message")) + cl.count(method("notifications/elicitation/complete")) +
						cl.count(method("notifications/tasks/status"))
				}
			}
			if mode == "shared" {
				g.Consistently(got(a)).WithTimeout(300 * time.Millisecond).Should(BeZero())
			} else {
				g.Eventually(got(a)).Should(Equal(3))
			}
			g.Expect(got(b)()).To(BeZero())
		})
	}
}

// A URL elicitation's completion goes to the session that was asked to complete it, once;
// other sessions never see its id.
func TestURLElicitationCompletionGoesToItsSession(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	u := startScript(t, testConfig(), unsolicitedLogServer)
	a, b := newClient(t, u), newClient(t, u)
	completions := func(cl *client) func() int {
		return func() int { return cl.count(method("notifications/elicitation/complete")) }
	}
	a.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"needs_sign_in"}}`)
	g.Expect(errorCode(a.await(responseTo(`1`), 5*time.Second))).To(BeEquivalentTo(-32042))
	b.send(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	b.await(responseTo(`1`), 5*time.Second)
	g.Eventually(completions(a)).Should(Equal(1))
	g.Expect(completions(b)()).To(BeZero())

	b.send(`{"jsonrpc":"2.0","id":2,"method":"ping"}`) // el-1 completes again: nobody's now
	b.await(responseTo(`2`), 5*time.Second)
	g.Consistently(completions(a)).WithTimeout(200 * time.Millisecond).Should(Equal(1))
	g.Expect(completions(b)()).To(BeZero())
}

func TestSlowSessionIsClosedWithoutStallingOthers(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	opts := testOptions()
	opts.SessionQueue = 2
	u, err := NewStdio(testConfig(), []string{everythingServer(t)}, opts)
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)

	slow, err := u.NewSession(context.Background()) // never read
	g.Expect(err).NotTo(HaveOccurred())
	fast := newClient(t, u)
	// Three progress notifications and a response: more than slow's queue holds.
	g.Expect(slow.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_tool_with_progress","_meta":{"progressToken":1}}}`))).To(Succeed())
	fast.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_tool_with_progress","_meta":{"progressToken":"p"}}}`)
	fast.await(responseTo(`1`), 5*time.Second)
	g.Expect(fast.count(method("notifications/progress"))).To(Equal(3))

	n := 0
	for range slow.Messages() { // drained and closed
		n++
	}
	g.Expect(n).To(Equal(2))
	err = slow.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":2,"method":"ping"}`))
	g.Expect(errors.Is(err, ErrSessionClosed)).To(BeTrue())
}

func TestOversizedResponseIsDroppedAndAnsweredWithAnError(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	opts := testOptions()
	opts.MaxMessageBytes = 1024 // initialize (~330 bytes) fits, tools/list does not
	u, err := NewStdio(testConfig(), []string{everythingServer(t)}, opts)
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	c := newClient(t, u)
	c.send(`{"jsonrpc":"2.0","id":"big","method":"tools/list"}`)
	resp := c.await(responseTo(`"big"`), 5*time.Second)
	g.Expect(resp).To(HaveKeyWithValue("error", HaveKeyWithValue("message", ContainSubstring("1024-byte"))))
	c.send(`{"jsonrpc":"2.0","id":"small","method":"ping"}`)
	g.Expect(c.await(responseTo(`"small"`), 5*time.Second)).To(HaveKey("result"))
}

func TestChildStderrGoesToTheLogLineByLine(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	var stderr testutil.SyncBuffer
	opts := testOptions()
	opts.Stderr = &stderr
	long := strings.Repeat("x", 40000)
	argv := []string{"/bin/sh", "-c", `echo "hello from the child" >&2; echo "` + long + `" >&2; exec "$0"`, everythingServer(t)}
	u, err := NewStdio(testConfig(), argv, opts)
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	g.Eventually(stderr.String).Should(ContainSubstring("hello from the child\n"))
	g.Eventually(func() int { return strings.Count(stderr.String(), "\n") }).Should(Equal(2))
	g.Expect(len(stderr.String())).To(BeNumerically("<", stderrLineMax), "an over-long stderr line is cut")
}

func TestCloseForwardsSIGTERMToTheProcessGroup(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	out := filepath.Join(t.TempDir(), "signals")
	u, err := NewStdio(testConfig(), []string{"testdata/sigterm.sh", out}, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(u.Start(context.Background())).To(Succeed())
	read := func() string { b, _ := os.ReadFile(out); return string(b) }
	g.Eventually(read).Should(And(ContainSubstring("parent-ready"), ContainSubstring("child-ready")))
	pid := childPID(u)

	start := time.Now()
	g.Expect(u.Close(context.Background())).To(Succeed())
	g.Expect(time.Since(start)).To(BeNumerically("<", time.Second), "a child that exits on SIGTERM is not waited for the whole grace")
	g.Expect(read()).To(And(ContainSubstring("parent-term"), ContainSubstring("child-term")))
	g.Expect(alive(pid)).To(BeFalse())
}

func TestCloseKillsAChildThatIgnoresSIGTERMAfterTheGrace(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	cfg := testConfig()
	cfg.ShutdownGrace.Duration = 300 * time.Millisecond
	out := filepath.Join(t.TempDir(), "ready")
	u, err := NewStdio(cfg, []string{"testdata/ignoreterm.sh", out}, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(u.Start(context.Background())).To(Succeed())
	g.Eventually(func() error { _, err := os.Stat(out); return err }).Should(Succeed())
	pid := childPID(u)

	start := time.Now()
	g.Expect(u.Close(context.Background())).To(Succeed())
	g.Expect(time.Since(start)).To(BeNumerically(">=", 300*time.Millisecond))
	g.Expect(time.Since(start)).To(BeNumerically("<", 2*time.Second))
	g.Expect(alive(pid)).To(BeFalse())
	g.Expect(groupAlive(pid)).To(BeFalse(), "nothing of the process group is left")
}

func TestStartFailsForAMissingCommand(t *testing.T) {
	g := NewWithT(t)
	u, err := NewStdio(testConfig(), []string{"/nonexistent/mcp-server"}, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(u.Start(context.Background())).To(MatchError(ContainSubstring("/nonexistent/mcp-server")))
	g.Expect(u.Ready()).To(BeFalse())
	_, err = NewStdio(testConfig(), nil, testOptions())
	g.Expect(err).To(HaveOccurred())
}

func TestClientThatNeverInitializesIsServed(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	u, err := NewStdio(testConfig(), []string{everythingServer(t)}, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := u.NewSession(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	// The SDK's default is the stateless 2026-07-28 protocol: server/discover, no
	// initialize; the child was initialized by the runtime, so this works too.
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "stateless", Version: "1"}, nil).Connect(ctx, sessionTransport{s}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = cs.Close() }()
	g.Expect(cs.InitializeResult().ProtocolVersion).To(Equal("2026-07-28"))
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Content[0].(*mcp.TextContent).Text).To(Equal("This is a simple text response for testing."))
}

func TestClosingOneSessionLeavesTheChildToTheOthers(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	u, err := NewStdio(testConfig(), []string{everythingServer(t)}, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	a, b := newClient(t, u), newClient(t, u)
	pid := childPID(u)
	a.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_tool_with_progress"}}`)
	b.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_tool_with_progress"}}`)
	g.Expect(b.s.Close()).To(Succeed()) // the client went away (EOF) mid-request
	g.Eventually(b.done).Should(BeClosed())
	g.Expect(text(a.await(responseTo(`1`), 5*time.Second))).NotTo(BeEmpty())
	g.Expect(childPID(u)).To(Equal(pid), "the child's stdin stays open")
	g.Expect(b.find(responseTo(`1`))).To(BeNil(), "a closed session's late response is dropped")
	g.Expect(errors.Is(b.s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":2,"method":"ping"}`)), ErrSessionClosed)).To(BeTrue())
}

func TestRestartBackoffGrowsAndResetsAfterAStableRun(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	opts := testOptions()
	opts.Backoff = Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second, ResetAfter: 700 * time.Millisecond}
	restarted := make(chan time.Time, 10)
	opts.OnRestart = func() { restarted <- time.Now() }
	u, err := NewStdio(testConfig(), []string{everythingServer(t)}, opts)
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)

	crash := func() time.Duration {
		t.Helper()
		pid := childPID(u)
		killed := time.Now()
		g.Expect(syscall.Kill(-pid, syscall.SIGKILL)).To(Succeed())
		var at time.Time
		g.Eventually(restarted).WithTimeout(5 * time.Second).Should(Receive(&at))
		g.Eventually(u.Ready).WithTimeout(5 * time.Second).Should(BeTrue())
		return at.Sub(killed)
	}
	// Crashing right after each start: 100ms, 200ms, 400ms.
	g.Expect(crash()).To(BeNumerically(">=", 100*time.Millisecond))
	g.Expect(crash()).To(BeNumerically(">=", 200*time.Millisecond))
	g.Expect(crash()).To(BeNumerically(">=", 400*time.Millisecond))
	// A child that stayed up past ResetAfter is restarted after Min again (not 800ms).
	time.Sleep(800 * time.Millisecond)
	g.Expect(crash()).To(BeNumerically("<", 700*time.Millisecond))
}

func TestSlowSessionWithTheDefaultQueueIsClosedWithoutStallingOthers(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	opts := testOptions()
	opts.SessionQueue = 0 // the default
	u, err := NewStdio(testConfig(), []string{everythingServer(t)}, opts)
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)

	slow, err := u.NewSession(context.Background()) // never read
	g.Expect(err).NotTo(HaveOccurred())
	fast := newClient(t, u)
	// More answers than the default queue holds.
	for i := range defaultSessionQueue + 4 {
		err := slow.Send(context.Background(), fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i+1))
		if err != nil {
			g.Expect(errors.Is(err, ErrSessionClosed)).To(BeTrue())
			break
		}
	}
	// The shared child keeps answering the session that reads.
	for i := range 3 {
		id := strconv.Itoa(100 + i)
		fast.send(`{"jsonrpc":"2.0","id":` + id + `,"method":"ping"}`)
		fast.await(responseTo(id), 5*time.Second)
	}
	n := 0
	for range slow.Messages() { // drained and closed
		n++
	}
	g.Expect(n).To(Equal(defaultSessionQueue))
	err = slow.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":99,"method":"ping"}`))
	g.Expect(errors.Is(err, ErrSessionClosed)).To(BeTrue())
}

// Stateless-revision requests get a process of their own, started on the first one; the
// session-era process is not touched, and Close stops both.
func TestStatelessSessionsRunOnTheirOwnProcess(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	u, err := NewStdio(testConfig(), []string{everythingServer(t)}, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	sh := u.(*shared)
	first := childPID(u)
	g.Expect(sh.stateless).To(BeNil(), "not started before a stateless request")

	st, ok := u.(StatelessSessions)
	g.Expect(ok).To(BeTrue())
	s1, err := st.NewStatelessSession(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	c := watch(t, s1)
	c.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}`)
	g.Expect(text(c.await(responseTo("1"), 5*time.Second))).To(ContainSubstring("simple text"))
	_ = s1.Close()

	sh.mu.Lock()
	m := sh.stateless
	sh.mu.Unlock()
	g.Expect(m).NotTo(BeNil())
	m.mu.Lock()
	second := m.child.pid
	m.mu.Unlock()
	g.Expect(second).NotTo(Equal(first))
	g.Expect(childPID(u)).To(Equal(first), "the session-era process is the same")

	s2, err := st.NewStatelessSession(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	_ = s2.Close()
	sh.mu.Lock()
	g.Expect(sh.stateless).To(BeIdenticalTo(m), "one stateless process, reused")
	sh.mu.Unlock()

	g.Expect(u.Close(context.Background())).To(Succeed())
	g.Eventually(func() bool { return alive(first) || alive(second) }, 5*time.Second).Should(BeFalse())
	_, err = st.NewStatelessSession(context.Background())
	g.Expect(err).To(MatchError(ErrClosed))
}

// listChangedServer announces a tool list change right after it is initialized, and
// exits when asked to.
const listChangedServer = `while IFS= read -r line; do
  id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
  [ -z "$id" ] && continue
  case "$line" in
  *'"method":"initialize"'*)
    printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":true}},"serverInfo":{"name":"fake","version":"1"}}}\n' "$id"
    printf '{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n' ;;
  *'"method":"exit_now"'*) exit 1 ;;
  *) printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id" ;;
  esac
done`

// The runtime learns that the shared child's tools changed even with no session open to
// relay list_changed to, and after a restart (the new process may list other tools).
func TestToolsChangedWithNoSessionOpenAndOnRestart(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	var changed atomic.Int32
	opts := testOptions()
	opts.OnToolsChanged = func() { changed.Add(1) }
	u, err := NewStdio(testConfig(), []string{"/bin/sh", "-c", listChangedServer}, opts)
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	g.Eventually(changed.Load).Should(BeEquivalentTo(1), "list_changed with no session open")

	a := newClient(t, u)
	a.send(`{"jsonrpc":"2.0","id":1,"method":"exit_now"}`)
	g.Eventually(changed.Load).WithTimeout(5*time.Second).Should(BeEquivalentTo(3), "the restart, then the new child's list_changed")
}

// A session holds at most MaxSubscriptionsPerSession resource subscriptions on a shared
// child (the mux keeps them all and renews them after a restart); others are not affected.
func TestSubscriptionsPerSessionAreCapped(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	u := startScript(t, testConfig(), unsolicitedLogServer)
	a, b := newClient(t, u), newClient(t, u)
	subscribe := func(cl *client, id, uri string) map[string]any {
		cl.send(`{"jsonrpc":"2.0","id":` + id + `,"method":"resources/subscribe","params":{"uri":"` + uri + `"}}`)
		return cl.await(responseTo(id), 5*time.Second)
	}
	for i := range MaxSubscriptionsPerSession {
		g.Expect(subscribe(a, strconv.Itoa(i+1), "test://r/"+strconv.Itoa(i))).To(HaveKey("result"))
	}
	g.Expect(errorCode(subscribe(a, "1000", "test://r/one-more"))).To(BeEquivalentTo(-32602))
	g.Expect(subscribe(a, "1001", "test://r/0")).To(HaveKey("result"), "renewing a held subscription is not another one")
	g.Expect(subscribe(b, "1", "test://r/one-more")).To(HaveKey("result"), "other sessions are not affected")

	a.send(`{"jsonrpc":"2.0","id":1002,"method":"resources/unsubscribe","params":{"uri":"test://r/1"}}`)
	a.await(responseTo(`1002`), 5*time.Second)
	g.Expect(subscribe(a, "1003", "test://r/one-more")).To(HaveKey("result"), "a freed place can be taken again")
}

// A subscriptions/listen stream is open until the client ends it: the request timeout does
// not apply to it (the server's session tracking gives it none either).
func TestListenIsNotCutByTheRequestTimeout(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	cfg := testConfig()
	cfg.RequestTimeout = config.D(200 * time.Millisecond)
	u := startScript(t, cfg, testutil.SilentListenServer)
	a := newClient(t, u)
	a.send(`{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{}}`)
	a.send(`{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	g.Expect(a.await(responseTo(`2`), 5*time.Second)).To(HaveKey("result"))
	g.Consistently(func() bool { return a.find(responseTo(`1`)) != nil }).WithTimeout(time.Second).Should(BeFalse())
}
