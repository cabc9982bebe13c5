package upstream

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// receiving records what a Receiver session passes to its function.
type receiving struct {
	client
	calls   atomic.Int32 // fn or end running now
	overlap atomic.Bool  // fn or end ran concurrently with another call
	ends    atomic.Int32
	late    atomic.Int32 // messages after end
}

func (r *receiving) enter() {
	if r.calls.Add(1) > 1 {
		r.overlap.Store(true)
	}
}

// receive opens a session whose messages reach a function (Receiver) once start is called.
func receive(t *testing.T, u Upstream) (*receiving, func()) {
	t.Helper()
	s, err := u.NewSession(context.Background())
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	r := &receiving{client: client{t: t, s: s, done: make(chan struct{})}}
	var once sync.Once
	start := func() {
		s.(Receiver).Receive(func(m []byte) {
			r.enter()
			defer r.calls.Add(-1)
			time.Sleep(time.Millisecond) // widen any window for concurrent calls
			if r.ends.Load() > 0 {
				r.late.Add(1)
			}
			r.mu.Lock()
			r.msgs = append(r.msgs, m)
			r.mu.Unlock()
		}, func() {
			r.enter()
			defer r.calls.Add(-1)
			r.ends.Add(1)
			once.Do(func() { close(r.done) })
		})
	}
	return r, start
}

// TestReceiverGetsEveryMessageInOrder checks the Receiver contract on both upstream kinds:
// messages queued before Receive come first, notifications precede the response they
// belong to, calls never overlap, end comes once after the last message and Messages() is
// closed.
func TestReceiverGetsEveryMessageInOrder(t *testing.T) {
	t.Parallel()
	stdio, err := NewStdio(testConfig(), []string{everythingServer(t)}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	serveHTTP(t, addr, false)
	httpUp, err := NewHTTP(httpConfig(addr), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for name, u := range map[string]Upstream{"stdio": stdio, "http": httpUp} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			startUpstream(t, u)
			r, start := receive(t, u)
			r.send(`{"jsonrpc":"2.0","id":"a","method":"initialize","params":` + initializeParams + `}`)
			g.Eventually(func() int { return len(r.s.Messages()) }, 5*time.Second, 5*time.Millisecond).Should(Equal(1),
				"the answer waits on Messages() until Receive")
			start()
			g.Expect(r.await(responseTo(`"a"`), time.Second)).To(HaveKeyWithValue("result", HaveKey("serverInfo")))
			r.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)

			for i, id := range []string{`"p1"`, `"p2"`, `"p3"`} {
				r.send(`{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"test_tool_with_progress","_meta":{"progressToken":"tok"}}}`)
				g.Expect(r.await(responseTo(id), 5*time.Second)).To(HaveKey("result"))
				g.Expect(r.count(method("notifications/progress"))).To(Equal(3*(i+1)), "the call's progress came before its response")
			}
			g.Expect(r.s.Messages()).To(BeEmpty())
			g.Expect(r.s.Close()).To(Succeed())
			g.Eventually(r.done, 5*time.Second).Should(BeClosed())
			_, open := <-r.s.Messages()
			g.Expect(open).To(BeFalse(), "Messages() is closed at the end")
			g.Expect(r.ends.Load()).To(BeEquivalentTo(1))
			g.Expect(r.late.Load()).To(BeZero())
			g.Expect(r.overlap.Load()).To(BeFalse(), "fn and end never run concurrently")
		})
	}
}

// TestReceiverAnswersInFlightRequestsWhenTheChildDies: a session with a Receiver has its in-flight request
// answered with an error and ends when the shared child exits.
func TestReceiverAnswersInFlightRequestsWhenTheChildDies(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	u, err := NewStdio(testConfig(), []string{"/bin/sh", "-c", `exec "$0"`, everythingServer(t)}, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	r, start := receive(t, u)
	start()
	r.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_tool_with_progress","_meta":{"progressToken":1}}}`)
	g.Expect(r.await(responseTo(`1`), 5*time.Second)).To(HaveKey("result"))
	// A call that never finishes (the tool waits for an elicitation answer), then the child dies.
	r.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_elicitation","arguments":{"message":"?"}}}`)
	g.Eventually(func() []byte { return r.find(method("elicitation/create")) }, 5*time.Second).ShouldNot(BeNil())
	m := u.(*shared).m
	m.mu.Lock()
	c := m.child
	m.unlock()
	c.kill()
	g.Expect(errorCode(r.await(responseTo(`2`), 5*time.Second))).To(BeEquivalentTo(-32603))
	g.Expect(r.overlap.Load()).To(BeFalse())
}
