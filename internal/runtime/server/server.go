// Package server is the client-facing side of mcp-runtime: the HTTP handler chain, the MCP
// transports (Streamable HTTP in both protocol eras, legacy HTTP+SSE, WebSocket), the one
// per-message pipeline they share, TLS serving with certificate reload, and the plain
// health/metrics listener.
//
// Handler chain, outermost first: recover → request id + access log → metrics → health →
// body limit → Origin allowlist → authentication → rate limit → transport → pipeline
// (JSON-RPC parse → per-tool rate limit → tool policy and argument schema → audit) →
// upstream. The protected-resource metadata is public (any Origin; the Host is checked, as
// the document may name it); /auth/ticket sits behind the Origin
// check and the rate limit (the ticket handler checks the bearer itself).
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/audit"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/metrics"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/origin"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/ratelimit"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/tlsreload"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/tools"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/upstream"
)

// Deps are the parts the server wires together. Upstream, Origin, Auth, Limiter and Tools
// are required; Audit and Metrics may be nil (off); Certs is required unless TLS is insecure.
// Auth decisions reach the audit log and metrics when Auth was built with
// Options.OnDecision set to Server.OnAuthDecision (Build does that).
type Deps struct {
	Upstream upstream.Upstream
	Origin   *origin.Checker
	Auth     *auth.Authenticator
	Limiter  *ratelimit.Limiter
	Tools    *tools.Policy
	Audit    *audit.Logger
	Metrics  *metrics.Metrics
	Certs    *tlsreload.Reloader
	Logger   *slog.Logger
	// AccessLog receives one JSON line per HTTP request (one Write per line). Default
	// os.Stderr; the runtime passes its batched log output (logbatch).
	AccessLog io.Writer
	// DrainTimeout bounds the graceful shutdown of in-flight requests. Default 20s.
	DrainTimeout time.Duration
	// SessionIdle closes Streamable HTTP sessions unused for this long. Default 30m.
	SessionIdle time.Duration
}

// Server serves MCP clients. Create it with New, run it with Serve.
type Server struct {
	cfg        *config.Config
	deps       Deps
	log        *slog.Logger
	obs        observer
	transports map[string]bool
	sessions   *registry
	shares     processShare // per-session processes per principal
	schemas    schemaFetch
	// bookkeeping counts answers handed on whose metrics and audit line are still being
	// written (they are written after the answer); Close waits for them.
	bookkeeping sync.WaitGroup

	baseCtx  context.Context // upstream sessions live in it; cancelled after the drain
	cancel   context.CancelFunc
	stopping chan struct{} // closed when shutdown starts: streams end, /readyz fails
	// stoppingCtx is cancelled when shutdown starts (with stopping), for context.AfterFunc.
	stoppingCtx  context.Context
	stopStopping context.CancelFunc
	stopOnce     atomic.Bool
	closers      []io.Closer // files Build opened (audit log)
}

// New checks the dependencies and builds a server for cfg (defaulted and validated).
func New(cfg *config.Config, d Deps) (*Server, error) {
	switch {
	case d.Upstream == nil, d.Origin == nil, d.Auth == nil, d.Limiter == nil, d.Tools == nil:
		return nil, errors.New("server: upstream, origin checker, authenticator, limiter and tool policy are required")
	case !cfg.TLS.Insecure && d.Certs == nil:
		return nil, errors.New("server: a certificate source is required unless tls.insecure is set")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.AccessLog == nil {
		d.AccessLog = os.Stderr
	}
	if d.DrainTimeout <= 0 {
		d.DrainTimeout = 20 * time.Second
	}
	if d.SessionIdle <= 0 {
		d.SessionIdle = 30 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, deps: d, log: d.Logger,
		obs:        observer{m: d.Metrics},
		transports: map[string]bool{},
		sessions:   newRegistry(cfg.Limits.MaxConnections, cfg.Limits.MaxConnectionsPerPrincipal),
		baseCtx:    ctx, cancel: cancel,
		stopping: make(chan struct{}),
	}
	if cfg.Upstream.SessionMode == "per-session" {
		s.shares = processShare{max: cfg.Upstream.MaxSessionsPerPrincipal, held: map[string]int{}}
	}
	s.stoppingCtx, s.stopStopping = context.WithCancel(context.Background())
	for _, t := range cfg.Endpoint.Transports {
		s.transports[t] = true
	}
	return s, nil
}

func (s *Server) sessionContext() context.Context { return s.baseCtx }

// callerOf collects who sent r, as the auth and rate-limit middlewares established it.
func (s *Server) callerOf(r *http.Request, transport string) caller {
	p, ok := auth.PrincipalFrom(r.Context())
	return caller{
		principal: p, hasAuth: ok, rateKey: ratelimit.Key(r),
		origin: r.Header.Get("Origin"), remote: r.RemoteAddr, transport: transport,
	}
}

// Handler is the client-facing handler chain.
func (s *Server) Handler() http.Handler {
	ep := s.cfg.Endpoint.Path
	transports := http.NewServeMux()
	transports.HandleFunc(ep, s.streamableEndpoint)
	if s.transports[transportSSE] {
		transports.Handle(ep+sseStreamSuffix, principalRequired(http.HandlerFunc(s.sseStream)))
		transports.Handle(ep+sseMessageSuffix, principalRequired(http.HandlerFunc(s.sseMessage)))
	}
	checkOrigin := s.deps.Origin.Guard(s.obs.m.OriginRejected)
	guard := func(h http.Handler) http.Handler {
		return checkOrigin(s.deps.Auth.Middleware(s.deps.Limiter.Middleware(h)))
	}
	protected := guard(transports)

	limited := http.NewServeMux()
	limited.Handle("/", protected)
	meta := s.deps.Origin.HostGuard(s.obs.m.OriginRejected)(s.deps.Auth.MetadataHandler())
	limited.Handle(auth.MetadataPath, meta)
	limited.Handle(auth.MetadataPath+ep, meta)
	if !s.cfg.Auth.Anonymous && !s.cfg.Auth.WebSocket.Tickets.Disabled {
		limited.Handle("/auth/ticket", checkOrigin(s.deps.Limiter.Middleware(s.deps.Auth.TicketHandler())))
	}

	limitBody := bodyLimit(s.cfg.Limits.MaxMessageBytes, s.cfg.Limits.ReadBodyTimeout.Duration)
	top := http.NewServeMux()
	top.Handle("/", limitBody(limited))
	top.HandleFunc("GET /healthz", s.healthz)
	top.HandleFunc("GET /readyz", s.readyz)

	// The endpoint's own requests take the chain the three muxes would route them to, without
	// the muxes: matching cost each request allocations in every one. (config.Validate keeps
	// the endpoint off the paths the muxes route elsewhere.)
	routed := endpointFirst(ep, limitBody(guard(http.HandlerFunc(s.streamableEndpoint))), top)
	return writeDeadlines(recoverMiddleware(s.log)(accessLog(s.deps.AccessLog)(s.deps.Metrics.Middleware(routed))))
}

// endpointFirst serves requests for exactly path with endpoint, and the others with mux.
func endpointFirst(path string, endpoint, mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path && r.Method != http.MethodConnect {
			endpoint.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// principalRequired refuses a request that reached a transport without a principal. Only a
// WebSocket upgrade awaiting first-message authentication gets past auth.Middleware that
// way, and only serveWebSocket may take it: any other handler would serve it unauthenticated.
func principalRequired(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := auth.PrincipalFrom(r.Context()); !ok {
			writeJSONError(w, http.StatusUnauthorized, "unauthenticated")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// HealthHandler serves /healthz, /readyz and /metrics on the plain health address.
func (s *Server) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.deps.Metrics != nil && !s.cfg.Metrics.Disabled {
		mux.Handle("GET /metrics", s.deps.Metrics.Handler())
	}
	return recoverMiddleware(s.log)(mux)
}

// healthz is 200 while the process serves: liveness must not depend on the upstream, or a
// slow child would get the whole pod restarted.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz is 200 when the upstream is initialized and the server is not shutting down.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	if s.stopOnce.Load() || !s.deps.Upstream.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Listen binds the configured client and health addresses.
func (s *Server) Listen() (client, health net.Listener, err error) {
	client, err = net.Listen("tcp", s.cfg.Listen.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("listening on listen.address %s: %w", s.cfg.Listen.Address, err)
	}
	health, err = net.Listen("tcp", s.cfg.Listen.HealthAddress)
	if err != nil {
		_ = client.Close()
		return nil, nil, fmt.Errorf("listening on listen.healthAddress %s: %w", s.cfg.Listen.HealthAddress, err)
	}
	return client, health, nil
}

// Serve serves clients on ln (TLS unless insecure) and health on healthLn until ctx ends,
// then shuts down gracefully: /readyz fails, streams and sockets close, in-flight requests
// drain within DrainTimeout, sessions close. It does not close the upstream.
func (s *Server) Serve(ctx context.Context, ln, healthLn net.Listener) error {
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.Limits.ReadHeaderTimeout.Duration,
		IdleTimeout:       s.cfg.Limits.IdleTimeout.Duration,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
	health := &http.Server{
		Handler:           s.HealthHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          errLog,
	}
	ln = newLimitListener(ln, s.cfg.Limits.MaxConnections)

	errs := make(chan error, 2)
	go func() {
		if s.cfg.TLS.Insecure {
			s.log.Warn("Serving plain HTTP: tls.insecure is set; never expose this listener")
			errs <- hs.Serve(ln)
			return
		}
		tc, err := tlsreload.ServerConfig(s.cfg.TLS, s.deps.Certs)
		if err != nil {
			errs <- err
			return
		}
		hs.TLSConfig = tc
		errs <- hs.ServeTLS(ln, "", "")
	}()
	go func() { errs <- health.Serve(healthLn) }()
	if s.deps.Certs != nil {
		go s.deps.Certs.Run(s.baseCtx)
	}
	go s.expireSessions()
	s.log.Info("Serving", "address", ln.Addr().String(), "health", healthLn.Addr().String(),
		"path", s.cfg.Endpoint.Path, "transports", s.cfg.Endpoint.Transports, "tls", !s.cfg.TLS.Insecure)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errs:
		serveErr = fmt.Errorf("serving: %w", serveErr)
	}
	s.shutdown(hs, health)
	return serveErr
}

func (s *Server) shutdown(hs, health *http.Server) {
	if s.stopOnce.Swap(true) {
		return
	}
	s.log.Info("Shutting down", "drainTimeout", s.deps.DrainTimeout.String())
	close(s.stopping)
	s.stopStopping()
	ctx, cancel := context.WithTimeout(context.Background(), s.deps.DrainTimeout)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		s.log.Warn("Drain deadline passed; closing the remaining connections", "error", err)
		_ = hs.Close()
	}
	s.sessions.closeAll()
	s.cancel()
	_ = health.Shutdown(ctx)
}

func (s *Server) expireSessions() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.baseCtx.Done():
			return
		case <-t.C:
			s.sessions.expire(s.deps.SessionIdle)
		}
	}
}

// Close stops the upstream (SIGTERM, its grace, then kill) and flushes the audit log. Call
// it after Serve returned.
func (s *Server) Close(ctx context.Context) error {
	err := s.deps.Upstream.Close(ctx)
	// Answers already handed on may still be writing their audit lines.
	waited := make(chan struct{})
	go func() { s.bookkeeping.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
	}
	if s.deps.Audit != nil {
		err = errors.Join(err, s.deps.Audit.Close(ctx))
	}
	for _, c := range s.closers {
		err = errors.Join(err, c.Close())
	}
	return err
}
