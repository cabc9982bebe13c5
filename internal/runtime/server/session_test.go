package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// pidsCommand runs the everything-server behind a shell that appends its pid (which is
// also its process group) to a file, read back by the returned function in start order.
func pidsCommand(t *testing.T) ([]string, func() []int) {
	pids := filepath.Join(t.TempDir(), "pids")
	read := func() []int {
		b, _ := os.ReadFile(pids)
		var out []int
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
		return out
	}
	return []string{"/bin/sh", "-c", `echo $$ >> "$0"; exec "$1"`, pids, everythingServer(t)}, read
}

// call POSTs one message on session sid and returns the status and the body.
func (h *httpRuntime) call(t *testing.T, sid, body string) (int, string) {
	t.Helper()
	resp := h.post(context.Background(), t, sid, bothAccepted, body)
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, string(b)
}

// In per-session mode a session whose process died is gone for good: the call in flight
// gets its JSON-RPC error, the session id then gets 404 (start a new session), not 502 on
// every retry, and a new session works.
func TestSessionWhoseUpstreamEndedGetsNotFound(t *testing.T) {
	g := NewWithT(t)
	command, pids := pidsCommand(t)
	h := startTestRuntime(t, func(c *config.Config) {
		c.Upstream.SessionMode, c.Upstream.PoolSize, c.Upstream.MaxSessions = "per-session", 1, 4
	}, command)
	sid := h.open(t)
	g.Expect(pids()).NotTo(BeEmpty())
	pid := pids()[0] // the warm process the session took

	// test_elicitation waits for the client's answer: the call stays in flight.
	resp := h.post(context.Background(), t, sid, bothAccepted,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_elicitation","arguments":{"message":"ok?"}}}`)
	defer func() { _ = resp.Body.Close() }()
	ch := make(chan map[string]any, 16)
	go events(resp.Body, ch)
	var msg map[string]any
	g.Eventually(ch, 5*time.Second).Should(Receive(&msg))
	g.Expect(msg).To(HaveKeyWithValue("method", "elicitation/create"))
	g.Expect(syscall.Kill(-pid, syscall.SIGKILL)).To(Succeed())
	g.Eventually(ch, 5*time.Second).Should(Receive(&msg))
	g.Expect(msg).To(HaveKeyWithValue("id", BeEquivalentTo(2)))
	g.Expect(msg).To(HaveKeyWithValue("error", HaveKeyWithValue("message", ContainSubstring("upstream process exited"))))

	ping := `{"jsonrpc":"2.0","id":3,"method":"ping"}`
	g.Eventually(func() int { status, _ := h.call(t, sid, ping); return status }, 5*time.Second).Should(Equal(http.StatusNotFound))
	status, body := h.call(t, sid, ping)
	g.Expect(status).To(Equal(http.StatusNotFound), "still gone: %s", body)
	g.Expect(body).To(ContainSubstring("initialize"))

	sid2 := h.open(t)
	g.Expect(sid2).NotTo(Equal(sid))
	status, body = h.call(t, sid2, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_simple_text"}}`)
	g.Expect(status).To(Equal(http.StatusOK))
	g.Expect(body).To(ContainSubstring("This is a simple text response for testing."))
}

// A shared child that dies is restarted, and its sessions go on with it.
func TestSessionOutlivesARestartOfTheSharedChild(t *testing.T) {
	g := NewWithT(t)
	command, pids := pidsCommand(t)
	h := startTestRuntime(t, nil, command)
	sid := h.open(t)
	g.Expect(pids()).To(HaveLen(1))
	g.Expect(syscall.Kill(-pids()[0], syscall.SIGKILL)).To(Succeed())
	g.Eventually(pids, 5*time.Second).Should(HaveLen(2))

	status, body := h.call(t, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_simple_text"}}`)
	g.Expect(status).To(Equal(http.StatusOK), body)
	var m map[string]any
	g.Expect(json.Unmarshal([]byte(body), &m)).To(Succeed(), body)
	g.Expect(m).To(HaveKeyWithValue("id", BeEquivalentTo(2)))
	g.Expect(m).To(HaveKey("result"))
}

// Ids are compared as the upstream compares them: a request whose id is another's in a
// different spelling is a duplicate, and a response carrying the re-encoded id finds its
// request (not, say, a tools/list answer delivered unfiltered as another call's).
func TestPendingIDsCompareByValue(t *testing.T) {
	g := NewWithT(t)
	s := &session{srv: &Server{cfg: &config.Config{}}, pending: map[string]*pendingCall{}}
	s.srv.cfg.Upstream.RequestTimeout = config.D(time.Minute)
	p := &pendingCall{id: json.RawMessage(`0`), method: "tools/list"}
	g.Expect(s.track(p)).To(BeNil())
	g.Expect(s.track(&pendingCall{id: json.RawMessage(`-0`), method: "tools/call"})).NotTo(BeNil(), "-0 is 0")
	g.Expect(s.untrack(json.RawMessage(`0.0`))).To(BeIdenticalTo(p))

	q := &pendingCall{id: json.RawMessage(`"\u0061"`), method: "tools/list"}
	g.Expect(s.track(q)).To(BeNil())
	g.Expect(s.untrack(json.RawMessage(`"a"`))).To(BeIdenticalTo(q))
}

// A session belongs to its creator's issuer and subject: the same subject from another
// trust domain (another issuer, or an API key of that name) does not get it by its id.
func TestSessionsBelongToIssuerAndSubject(t *testing.T) {
	g := NewWithT(t)
	r := newRegistry(10, 10)
	who := func(issuer, method string) caller {
		p := auth.Principal{Subject: "alice", Issuer: issuer, Method: method}
		return caller{principal: p, hasAuth: true, rateKey: "sub:" + issuer + " alice", transport: transportStreamable}
	}
	owner := who("https://idp-a.example", auth.MethodJWT)
	s := &session{id: "s1", caller: owner}
	g.Expect(r.add(s)).To(BeZero())
	g.Expect(r.get("s1", owner)).To(BeIdenticalTo(s))
	g.Expect(r.get("s1", who("https://idp-b.example", auth.MethodJWT))).To(BeNil(), "another issuer's alice")
	g.Expect(r.get("s1", who("", auth.MethodAPIKey))).To(BeNil(), "an API key named alice")
	anonymous := caller{transport: transportStreamable}
	g.Expect(r.get("s1", anonymous)).To(BeNil(), "an anonymous caller")
	a := &session{id: "s2", caller: anonymous}
	g.Expect(r.add(a)).To(BeZero())
	g.Expect(r.get("s2", anonymous)).To(BeIdenticalTo(a))
	g.Expect(r.get("s2", owner)).To(BeNil(), "alice, in an anonymous caller's session")
}

// A POST's handler writes its answers and then runs their bookkeeping; answers it never
// takes (it left first) are finished by replyTo.leave, and one offered after it left by
// the deliverer itself: every relayed tools/call gets its audit line either way.
func TestAnswersThePOSTDidNotTakeAreStillAudited(t *testing.T) {
	g := NewWithT(t)
	srv, cfg := buildIdleServer(t)
	sess := openSession(srv, "s", nil, caller{transport: config.TransportStreamableHTTP, remote: "127.0.0.1:1"})
	reply := newReplyTo(2)
	relay := func(id string) {
		p := &pendingCall{id: json.RawMessage(id), method: "tools/call", tool: "echo", start: time.Now(), reply: reply, from: sess.caller}
		g.Expect(sess.track(p)).To(BeNil())
		sess.deliver([]byte(`{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[]}}`))
	}

	relay("1") // offered: waits on the reply channel for a handler that never takes it
	g.Expect(reply.ch).To(HaveLen(1))
	reply.leave(sess) // the handler leaves: the answer it left behind is finished here
	g.Expect(reply.ch).To(BeEmpty())
	relay("2") // after the handler left: finished by the deliverer, not queued
	g.Expect(reply.ch).To(BeEmpty())

	waited := make(chan struct{})
	go func() { srv.bookkeeping.Wait(); close(waited) }()
	g.Eventually(waited, 5*time.Second).Should(BeClosed(), "every answer's bookkeeping ran")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.Expect(srv.Close(ctx)).To(Succeed())
	b, err := os.ReadFile(cfg.Audit.File)
	g.Expect(err).NotTo(HaveOccurred())
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec map[string]any
		g.Expect(json.Unmarshal([]byte(line), &rec)).To(Succeed(), line)
		if rec["kind"] == "tool_call" && rec["outcome"] == "ok" && rec["tool"] == "echo" {
			ids = append(ids, line)
		}
	}
	g.Expect(ids).To(HaveLen(2), "one audit line per relayed call:\n%s", b)
}
