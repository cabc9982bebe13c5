package ratelimit

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// clock is a manual clock for the buckets.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func TestAllowTokenBucket(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	l := New(config.Limits{RequestsPerSecond: 2, Burst: 3}, WithClock(clk.Now))
	for i := range 3 {
		ok, _ := l.Allow("a")
		g.Expect(ok).To(BeTrue(), "request %d within the burst", i)
	}
	ok, wait := l.Allow("a")
	g.Expect(ok).To(BeFalse())
	g.Expect(wait).To(BeNumerically("~", 500*time.Millisecond, time.Millisecond))

	// Another principal has its own bucket.
	ok, _ = l.Allow("b")
	g.Expect(ok).To(BeTrue())

	// A refused request takes no token: after the advertised wait one request passes.
	clk.Advance(wait)
	ok, _ = l.Allow("a")
	g.Expect(ok).To(BeTrue())
	ok, _ = l.Allow("a")
	g.Expect(ok).To(BeFalse())
}

func TestAllowDisabled(t *testing.T) {
	g := NewWithT(t)
	l := New(config.Limits{RequestsPerSecond: -1})
	for range 1000 {
		ok, _ := l.Allow("a")
		g.Expect(ok).To(BeTrue())
	}
	g.Expect(l.Len()).To(BeZero())
}

func TestAllowToolPerPrincipalAndGlob(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	l := New(config.Limits{RequestsPerSecond: 100, Burst: 100, PerTool: []config.ToolLimit{
		{Tool: "search_*", RequestsPerSecond: 1, Burst: 2},
		{Tool: "*", RequestsPerSecond: 10, Burst: 10},
	}}, WithClock(clk.Now))

	// search_a and search_b share the first glob's bucket.
	g.Expect(first(l.AllowTool("p", "search_a"))).To(BeTrue())
	g.Expect(first(l.AllowTool("p", "search_b"))).To(BeTrue())
	ok, wait := l.AllowTool("p", "search_a")
	g.Expect(ok).To(BeFalse())
	g.Expect(wait).To(BeNumerically("~", time.Second, time.Millisecond))
	// Another principal, or a tool matching the second glob, is not affected.
	g.Expect(first(l.AllowTool("q", "search_a"))).To(BeTrue())
	g.Expect(first(l.AllowTool("p", "fetch"))).To(BeTrue())

	unlimited := New(config.Limits{RequestsPerSecond: 1, Burst: 1})
	for range 100 {
		g.Expect(first(unlimited.AllowTool("p", "anything"))).To(BeTrue())
	}
}

func first(ok bool, _ time.Duration) bool { return ok }

// Tool names are not paths: a per-tool glob limits names containing '/' too.
func TestAllowToolGlobMatchesNamesWithSlash(t *testing.T) {
	cases := []struct{ glob, tool string }{
		{"*", "github/delete_repo"},
		{"github/*", "github/delete_repo"},
		{"admin_*", "admin_x/drop"},
		{"*_repo", "github/org/delete_repo"},
	}
	for _, tc := range cases {
		l := New(config.Limits{PerTool: []config.ToolLimit{{Tool: tc.glob, RequestsPerSecond: 1, Burst: 1}}}, WithClock(newClock().Now))
		firstOK, secondOK := first(l.AllowTool("p", tc.tool)), first(l.AllowTool("p", tc.tool))
		if !firstOK || secondOK {
			t.Errorf("glob %q, tool %q: two calls allowed %v, %v; want true, false (burst 1)", tc.glob, tc.tool, firstOK, secondOK)
		}
	}
}

func TestIdleBucketsAreEvicted(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	l := New(config.Limits{RequestsPerSecond: 10, Burst: 20, PerTool: []config.ToolLimit{{Tool: "*", RequestsPerSecond: 1, Burst: 1}}}, WithClock(clk.Now))
	for i := range 5000 {
		l.Allow(fmt.Sprint("ip:10.0.", i/256, ".", i%256))
		l.AllowTool(fmt.Sprint("ip:10.0.", i/256, ".", i%256), "t")
	}
	g.Expect(l.Len()).To(Equal(10000))

	// A bucket idle for its full refill time (burst/rate = 2s here) equals a new one.
	clk.Advance(2 * time.Second)
	l.Allow("ip:192.0.2.1")
	l.AllowTool("ip:192.0.2.1", "t")
	g.Expect(l.Len()).To(Equal(2))
}

func TestEvictionKeepsActiveBucketsLimited(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	l := New(config.Limits{RequestsPerSecond: 1, Burst: 2}, WithClock(clk.Now))
	l.Allow("busy")
	l.Allow("busy")
	clk.Advance(1500 * time.Millisecond) // less than the 2s refill time: the bucket stays
	l.Allow("other")
	ok, _ := l.Allow("busy")
	g.Expect(ok).To(BeTrue()) // 1.5 tokens refilled
	ok, _ = l.Allow("busy")
	g.Expect(ok).To(BeFalse(), "eviction must not hand out a fresh burst to an active principal")
}

func TestMaxKeysBoundsMemory(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	l := New(config.Limits{RequestsPerSecond: 1, Burst: 1}, WithClock(clk.Now), WithMaxKeys(100))
	for i := range 10000 {
		l.Allow(fmt.Sprint("k", i))
	}
	g.Expect(l.Len()).To(BeNumerically("<=", 101)) // the keys plus the shared overflow bucket
	// Keys beyond the bound share one bucket, so a flood of new keys is still limited.
	ok, _ := l.Allow("fresh-key")
	g.Expect(ok).To(BeFalse())
}

func TestAcquireConn(t *testing.T) {
	g := NewWithT(t)
	l := New(config.Limits{MaxConnections: 3, MaxConnectionsPerPrincipal: 2})
	r1, ok := l.AcquireConn("a")
	g.Expect(ok).To(BeTrue())
	r2, ok := l.AcquireConn("a")
	g.Expect(ok).To(BeTrue())
	_, ok = l.AcquireConn("a")
	g.Expect(ok).To(BeFalse(), "per-principal limit")
	r3, ok := l.AcquireConn("b")
	g.Expect(ok).To(BeTrue())
	_, ok = l.AcquireConn("c")
	g.Expect(ok).To(BeFalse(), "overall limit")

	r1()
	r1() // release is idempotent
	total, forA := l.Connections("a")
	g.Expect(total).To(Equal(2))
	g.Expect(forA).To(Equal(1))
	_, ok = l.AcquireConn("c")
	g.Expect(ok).To(BeTrue())
	r2()
	r3()
	_, forA = l.Connections("a")
	g.Expect(forA).To(BeZero())
	g.Expect(l.conns).NotTo(HaveKey("a"), "released principals leave no entry behind")
}

func TestKey(t *testing.T) {
	cases := []struct {
		name       string
		remoteAddr string
		xff        string
		principal  *auth.Principal
		want       string
	}{
		{"ipv4", "198.51.100.7:5555", "", nil, "ip:198.51.100.7"},
		{"forwarded header is ignored", "198.51.100.7:5555", "203.0.113.9", nil, "ip:198.51.100.7"},
		{"ipv6 keyed by /64", "[2001:db8:1:2:aaaa::1]:443", "", nil, "ip:2001:db8:1:2::/64"},
		{"ipv4-mapped ipv6", "[::ffff:198.51.100.7]:1", "", nil, "ip:198.51.100.7"},
		{"subject wins", "198.51.100.7:5555", "", &auth.Principal{Subject: "alice", Issuer: "https://idp"}, "sub:https://idp alice"},
		{"anonymous falls back to ip", "198.51.100.7:5555", "", &auth.Principal{Method: auth.MethodAnonymous}, "ip:198.51.100.7"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			r.RemoteAddr = tc.remoteAddr
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if tc.principal != nil {
				r = r.WithContext(auth.WithPrincipal(r.Context(), *tc.principal))
			}
			if got := Key(r); got != tc.want {
				t.Errorf("Key() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{
		0:                       1,
		time.Millisecond:        1,
		time.Second:             1,
		1001 * time.Millisecond: 2,
		90 * time.Second:        90,
		48 * time.Hour:          86400,
	} {
		if got := RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestMiddleware429AndConnectionSlots(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	l := New(config.Limits{RequestsPerSecond: 1, Burst: 2, MaxConnections: 10, MaxConnectionsPerPrincipal: 1}, WithClock(clk.Now))
	calls := 0
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		_, held := l.Connections(Key(r))
		g.Expect(held).To(Equal(1), "the request holds a connection slot while it runs")
	}))
	do := func(remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	g.Expect(do("192.0.2.1:1").Code).To(Equal(http.StatusOK))
	g.Expect(do("192.0.2.1:2").Code).To(Equal(http.StatusOK))
	w := do("192.0.2.1:3")
	g.Expect(w.Code).To(Equal(http.StatusTooManyRequests))
	g.Expect(w.Header().Get("Retry-After")).To(Equal("1"))
	g.Expect(w.Body.String()).To(MatchJSON(`{"error":"rate_limited"}`))
	g.Expect(calls).To(Equal(2))
	total, _ := l.Connections("ip:192.0.2.1")
	g.Expect(total).To(BeZero(), "slots are released when requests end")

	// A principal already holding its only slot (e.g. an open stream) is refused.
	release, ok := l.AcquireConn("ip:192.0.2.2")
	g.Expect(ok).To(BeTrue())
	w = do("192.0.2.2:1")
	g.Expect(w.Code).To(Equal(http.StatusTooManyRequests))
	g.Expect(w.Body.String()).To(MatchJSON(`{"error":"too_many_connections"}`))
	release()
}

func TestMiddleware503WhenFull(t *testing.T) {
	g := NewWithT(t)
	l := New(config.Limits{RequestsPerSecond: 100, Burst: 100, MaxConnections: 1, MaxConnectionsPerPrincipal: 1})
	release, _ := l.AcquireConn("someone-else")
	defer release()
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	w := httptest.NewRecorder()
	l.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("next ran") })).ServeHTTP(w, r)
	g.Expect(w.Code).To(Equal(http.StatusServiceUnavailable))
	g.Expect(w.Header().Get("Retry-After")).To(Equal("1"))
}

func TestConcurrentUse(t *testing.T) {
	l := New(config.Limits{RequestsPerSecond: 1000, Burst: 1000, MaxConnections: 100, MaxConnectionsPerPrincipal: 100}, WithMaxKeys(50))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 500 {
				key := fmt.Sprint(i, "-", j%80)
				l.Allow(key)
				l.AllowTool(key, "x")
				if rel, ok := l.AcquireConn(key); ok {
					rel()
				}
			}
		})
	}
	wg.Wait()
	if total, _ := l.Connections(""); total != 0 {
		t.Fatalf("leaked %d connection slots", total)
	}
}

// A handler whose connection outlives the request (a WebSocket) keeps the slot until it
// releases it; every other request gives it back when the handler returns.
func TestKeepConnHoldsTheSlotPastTheRequest(t *testing.T) {
	g := NewWithT(t)
	l := New(config.Limits{RequestsPerSecond: -1, MaxConnectionsPerPrincipal: 1})
	var release func()
	h := l.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	keep := l.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { release = KeepConn(r.Context()) }))
	do := func(h http.Handler) int {
		r := httptest.NewRequest(http.MethodGet, "/mcp", nil)
		r.RemoteAddr = "192.0.2.9:1"
		r.Header.Set("Upgrade", "websocket")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	g.Expect(do(keep)).To(Equal(http.StatusOK))
	_, held := l.Connections("ip:192.0.2.9")
	g.Expect(held).To(Equal(1), "kept after the handler returned")
	g.Expect(do(h)).To(Equal(http.StatusTooManyRequests))
	release()
	release() // idempotent
	_, held = l.Connections("ip:192.0.2.9")
	g.Expect(held).To(BeZero())
	g.Expect(do(h)).To(Equal(http.StatusOK))
	g.Expect(KeepConn(context.Background())).NotTo(BeNil(), "no slot: a no-op")
}

// As the authenticator's throttle, a client IP is charged only for failures; Admit peeks
// without taking, and a refused client waits for one token's refill.
func TestFailedAuthenticationsAreChargedToTheClientIP(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	l := New(config.Limits{RequestsPerSecond: 2, Burst: 2}, WithClock(clk.Now))
	var _ auth.FailureThrottle = l
	from := func(addr string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.RemoteAddr = addr
		return r
	}
	attacker, other := from("192.0.2.7:5000"), from("198.51.100.1:5000")
	for range 5 {
		_, ok := l.Admit(attacker)
		g.Expect(ok).To(BeTrue(), "admitting takes nothing")
	}
	l.Failed(attacker)
	l.Failed(from("192.0.2.7:6000")) // another port of the same client
	wait, ok := l.Admit(attacker)
	g.Expect(ok).To(BeFalse())
	g.Expect(wait).To(BeNumerically("~", 500*time.Millisecond, time.Millisecond))
	_, ok = l.Admit(other)
	g.Expect(ok).To(BeTrue(), "other clients are not affected")

	clk.Advance(wait)
	_, ok = l.Admit(attacker)
	g.Expect(ok).To(BeTrue(), "one failure more is admitted after one token's refill")

	_, ok = New(config.Limits{RequestsPerSecond: -1}).Admit(attacker)
	g.Expect(ok).To(BeTrue(), "no per-client limit, no throttle")
}
