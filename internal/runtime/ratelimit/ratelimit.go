// Package ratelimit bounds what one principal can do: a token bucket per principal
// (authenticated subject, else client IP taken from RemoteAddr — never from
// X-Forwarded-For, which any client can forge), token buckets per principal and tool glob,
// and concurrent connections overall and per principal.
//
// Memory stays bounded: a bucket idle long enough to have refilled is indistinguishable
// from a new one, so it is evicted; beyond MaxKeys live buckets, new keys share one
// overflow bucket instead of growing the map.
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/glob"
)

// DefaultMaxKeys bounds the live buckets of each kind (per principal, per principal+tool).
const DefaultMaxKeys = 1 << 16

// overflowKey is the shared bucket for keys beyond MaxKeys.
const overflowKey = "\x00overflow"

// Limiter holds the buckets and connection counts. Safe for concurrent use.
type Limiter struct {
	now     func() time.Time
	maxKeys int

	principal *bucketSet // nil when RequestsPerSecond < 0
	tools     []toolRule

	mu         sync.Mutex
	conns      map[string]int
	totalConns int
	maxConns   int
	maxPerKey  int
}

type toolRule struct {
	glob    glob.Pattern // a malformed one (refused by config.Validate) matches nothing
	buckets *bucketSet
}

// Option tunes a Limiter (tests use them; production uses the defaults).
type Option func(*Limiter)

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(l *Limiter) { l.now = now } }

// WithMaxKeys bounds the live buckets of each kind; 0 keeps DefaultMaxKeys.
func WithMaxKeys(n int) Option {
	return func(l *Limiter) {
		if n > 0 {
			l.maxKeys = n
		}
	}
}

// New builds a Limiter from defaulted limits (config.Config.Default). Zero connection
// limits mean unlimited; RequestsPerSecond < 0 turns the per-principal bucket off.
func New(cfg config.Limits, opts ...Option) *Limiter {
	l := &Limiter{
		now:       time.Now,
		maxKeys:   DefaultMaxKeys,
		conns:     map[string]int{},
		maxConns:  cfg.MaxConnections,
		maxPerKey: cfg.MaxConnectionsPerPrincipal,
	}
	for _, o := range opts {
		o(l)
	}
	if cfg.RequestsPerSecond > 0 {
		l.principal = newBucketSet(cfg.RequestsPerSecond, cfg.Burst, l.maxKeys)
	}
	for _, t := range cfg.PerTool {
		if t.RequestsPerSecond > 0 {
			pat, err := glob.Compile(t.Tool)
			if err != nil {
				continue
			}
			l.tools = append(l.tools, toolRule{glob: pat, buckets: newBucketSet(t.RequestsPerSecond, t.Burst, l.maxKeys)})
		}
	}
	return l
}

// Allow takes one token from key's bucket. When refused, retryAfter is how long until a
// token is available.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	if l.principal == nil {
		return true, 0
	}
	return l.principal.take(key, l.now())
}

// Admit and Failed make the Limiter the authenticator's auth.FailureThrottle: a failed
// authentication is charged to the client IP's bucket, as an unauthenticated request would
// be, and while that bucket is empty nothing more from the client is verified (429).

// Admit reports whether r's client IP has a token left, without taking it.
func (l *Limiter) Admit(r *http.Request) (retryAfter time.Duration, ok bool) {
	if l.principal == nil {
		return 0, true
	}
	return l.principal.peek("ip:"+ClientIP(r.RemoteAddr), l.now())
}

// Failed takes a token from r's client IP bucket.
func (l *Limiter) Failed(r *http.Request) {
	if l.principal != nil {
		l.principal.take("ip:"+ClientIP(r.RemoteAddr), l.now())
	}
}

// AllowTool takes one token from the bucket of key and the first PerTool glob matching
// tool (one bucket per principal and glob). Tools no glob matches are not limited.
func (l *Limiter) AllowTool(key, tool string) (bool, time.Duration) {
	for _, t := range l.tools {
		if t.glob.Match(tool) {
			return t.buckets.take(key+"\x00"+t.glob.String(), l.now())
		}
	}
	return true, 0
}

// AcquireConn reserves a connection slot for key, overall and per principal. release
// frees it and may be called more than once.
func (l *Limiter) AcquireConn(key string) (release func(), ok bool) {
	if !l.takeConn(key) {
		return func() {}, false
	}
	return l.releaseOnce(key), true
}

// releaseOnce returns a func that gives key's slot back the first time it is called.
func (l *Limiter) releaseOnce(key string) func() {
	var once sync.Once
	return func() { once.Do(func() { l.returnConn(key) }) }
}

// takeConn takes a connection slot for key, if one is free; returnConn gives it back.
func (l *Limiter) takeConn(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if (l.maxConns > 0 && l.totalConns >= l.maxConns) || (l.maxPerKey > 0 && l.conns[key] >= l.maxPerKey) {
		return false
	}
	l.totalConns++
	l.conns[key]++
	return true
}

func (l *Limiter) returnConn(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.totalConns--
	if l.conns[key]--; l.conns[key] <= 0 {
		delete(l.conns, key)
	}
}

// Connections reports the open connections overall and for key.
func (l *Limiter) Connections(key string) (total, forKey int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.totalConns, l.conns[key]
}

// Len reports the live buckets (per principal plus per tool), for tests and metrics.
func (l *Limiter) Len() int {
	n := 0
	if l.principal != nil {
		n += l.principal.len()
	}
	for _, t := range l.tools {
		n += t.buckets.len()
	}
	return n
}

// Middleware takes a token for the request's principal (429 + Retry-After when empty) and
// holds a connection slot for the request's lifetime — streams included, and WebSockets
// through KeepConn —
// answering 429 when the principal has too many and 503 when the runtime does. Place it
// after authentication so the principal is known.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := Key(r)
		if ok, wait := l.Allow(key); !ok {
			WriteTooManyRequests(w, wait)
			return
		}
		if !l.takeConn(key) {
			total, _ := l.Connections(key)
			status := http.StatusTooManyRequests
			if l.maxConns > 0 && total >= l.maxConns {
				status = http.StatusServiceUnavailable
			}
			w.Header().Set("Retry-After", "1")
			writeJSONError(w, status, "too_many_connections")
			return
		}
		if r.Header.Get("Upgrade") == "" {
			// Only an upgraded connection outlives its request (KeepConn); the others
			// skip the request copy and the release closure that handing the slot over costs.
			defer l.returnConn(key)
			next.ServeHTTP(w, r)
			return
		}
		slot := &connSlot{release: l.releaseOnce(key)}
		defer slot.end()
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), connSlotKey{}, slot)))
	})
}

// connSlot is the connection slot Middleware holds for a request, until the handler
// returns or, when the handler keeps the connection (a WebSocket), until KeepConn's caller
// releases it.
type connSlot struct {
	release func()
	kept    bool
}

type connSlotKey struct{}

func (s *connSlot) end() {
	if !s.kept {
		s.release()
	}
}

// KeepConn hands the request's connection slot to a handler whose connection outlives the
// request (a hijacked WebSocket served on a goroutine of its own): the slot stays taken
// until the returned func is called. Without Middleware there is no slot; it returns a no-op.
func KeepConn(ctx context.Context) (release func()) {
	s, ok := ctx.Value(connSlotKey{}).(*connSlot)
	if !ok || s.kept {
		return func() {}
	}
	s.kept = true
	return s.release
}

// Key names the principal of a request: "sub:<issuer> <subject>" when authenticated with
// a subject, else "ip:<client IP>" from RemoteAddr (an IPv6 client is keyed by its /64,
// which one host usually owns whole).
func Key(r *http.Request) string {
	if p, ok := auth.PrincipalFrom(r.Context()); ok && p.Subject != "" {
		return "sub:" + p.Issuer + " " + p.Subject
	}
	return "ip:" + ClientIP(r.RemoteAddr)
}

// ClientIP returns the IP of a RemoteAddr, IPv6 addresses masked to their /64.
func ClientIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// RetryAfterSeconds rounds a wait up to whole seconds, between 1 and one day (the
// Retry-After form).
func RetryAfterSeconds(d time.Duration) int {
	if d > 24*time.Hour {
		return 86400
	}
	return max(1, int(math.Ceil(d.Seconds())))
}

// WriteTooManyRequests answers 429 with Retry-After.
func WriteTooManyRequests(w http.ResponseWriter, retryAfter time.Duration) {
	w.Header().Set("Retry-After", fmt.Sprint(RetryAfterSeconds(retryAfter)))
	writeJSONError(w, http.StatusTooManyRequests, "rate_limited")
}

func writeJSONError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "{\"error\":%q}\n", code)
}

// bucketSet is a map of token buckets with idle eviction and a size bound.
type bucketSet struct {
	limit rate.Limit
	burst int
	// idle is how long a bucket takes to refill completely; an entry untouched that long
	// is equivalent to a fresh bucket and can be dropped.
	idle    time.Duration
	maxKeys int

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newBucketSet(rps float64, burst, maxKeys int) *bucketSet {
	burst = max(burst, 1)
	idle := time.Duration(float64(burst) / rps * float64(time.Second))
	return &bucketSet{
		limit:   rate.Limit(rps),
		burst:   burst,
		idle:    max(idle, time.Second),
		maxKeys: maxKeys,
		buckets: map[string]*bucket{},
	}
}

func (s *bucketSet) take(key string, now time.Time) (bool, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Sweep at most once per idle period (amortised O(1) per call), and when full.
	if now.Sub(s.lastSweep) >= s.idle || (len(s.buckets) >= s.maxKeys && now.Sub(s.lastSweep) >= time.Second) {
		s.sweep(now)
	}
	b := s.buckets[key]
	if b == nil {
		if len(s.buckets) >= s.maxKeys {
			key = overflowKey
			b = s.buckets[key]
		}
		if b == nil {
			b = &bucket{lim: rate.NewLimiter(s.limit, s.burst)}
			s.buckets[key] = b
		}
	}
	b.last = now
	res := b.lim.ReserveN(now, 1)
	if !res.OK() {
		return false, 24 * time.Hour
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// peek reports whether key's bucket has a token now, and if not how long until it has.
func (s *bucketSet) peek(key string, now time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[key]
	if b == nil {
		b = s.buckets[overflowKey] // a new key beyond maxKeys would share it
		if b == nil || len(s.buckets) < s.maxKeys {
			return 0, true
		}
	}
	tokens := b.lim.TokensAt(now)
	if tokens >= 1 {
		return 0, true
	}
	return time.Duration((1 - tokens) / float64(s.limit) * float64(time.Second)), false
}

func (s *bucketSet) sweep(now time.Time) {
	s.lastSweep = now
	for k, b := range s.buckets {
		if now.Sub(b.last) >= s.idle {
			delete(s.buckets, k)
		}
	}
}

func (s *bucketSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buckets)
}
