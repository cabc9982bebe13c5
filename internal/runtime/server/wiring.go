package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
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

// Options for Build. The zero value is safe.
type Options struct {
	// Command starts a stdio upstream (the words after "--"); empty: cfg.Upstream.Command.
	Command []string
	Logger  *slog.Logger
	// LogOutput is where Logger writes; the access log writes its lines there directly
	// (one Write per line). When it counts dropped lines (a logbatch.Writer from
	// logbatch.NewJSONLogger does), the counts become metrics. nil: os.Stderr.
	LogOutput io.Writer
	// Upstream replaces the upstream built from cfg (tests).
	Upstream upstream.Upstream
	// UpstreamOptions tune the built upstream.
	UpstreamOptions upstream.Options
	// DrainTimeout: see Deps.
	DrainTimeout time.Duration
	// AuthReloadInterval is how often JWT key files and the API key directory are re-read;
	// 0: auth's default (a minute). Tests shorten it.
	AuthReloadInterval time.Duration
}

// Build creates every part from a validated config and wires a Server. The upstream is
// built but not started (see Server.Start).
func Build(ctx context.Context, cfg *config.Config, o Options) (*Server, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	d := Deps{Logger: log, Upstream: o.Upstream, DrainTimeout: o.DrainTimeout}
	if o.LogOutput != nil {
		d.AccessLog = o.LogOutput
	}
	var err error
	if !cfg.Metrics.Disabled {
		d.Metrics = metrics.New()
	}
	if src, ok := o.LogOutput.(metrics.LineSource); ok {
		if err := d.Metrics.WatchLog(src); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	var closers []io.Closer
	if !cfg.Audit.Disabled {
		w, err := audit.OpenWriter(cfg.Audit)
		if err != nil {
			return nil, fmt.Errorf("audit.file: %w", err)
		}
		closers = append(closers, w)
		d.Audit = audit.New(cfg.Audit, w)
		if err := d.Metrics.WatchAudit(d.Audit); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	if d.Origin, err = origin.New(cfg.Origins, cfg.Endpoint.PublicURL); err != nil {
		return nil, fmt.Errorf("origins: %w", err)
	}
	// The server records auth decisions; it exists only after the authenticator.
	var srv atomic.Pointer[Server]
	onDecision := func(r *http.Request, dec auth.Decision) {
		if s := srv.Load(); s != nil {
			s.OnAuthDecision(r, dec)
		}
	}
	d.Limiter = ratelimit.New(cfg.Limits)
	ao := auth.Options{Logger: log, OnDecision: onDecision, Throttle: d.Limiter, ReloadInterval: o.AuthReloadInterval}
	if slices.Contains(cfg.Endpoint.Transports, config.TransportWebSocket) {
		ao.WebSocketPath = cfg.Endpoint.Path
	}
	if d.Auth, err = auth.New(ctx, cfg.Auth, cfg.Endpoint.PublicURL, ao); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if d.Tools, err = tools.New(cfg.Tools); err != nil {
		return nil, fmt.Errorf("tools: %w", err)
	}
	if !cfg.TLS.Insecure {
		if d.Certs, err = tlsreload.New(cfg.TLS.CertFile, cfg.TLS.KeyFile, tlsreload.Options{Logger: log, ClientCAFile: clientCAFile(cfg.TLS)}); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	if d.Upstream == nil {
		uo := o.UpstreamOptions
		if uo.Logger == nil {
			uo.Logger = log
		}
		if uo.OnToolsChanged == nil {
			uo.OnToolsChanged = d.Tools.Invalidate
		}
		if uo.OnRestart == nil {
			uo.OnRestart = d.Metrics.UpstreamRestart
		}
		if d.Upstream, err = newUpstream(cfg, o.Command, uo); err != nil {
			return nil, err
		}
	}
	s, err := New(cfg, d)
	if err != nil {
		return nil, err
	}
	s.closers = closers
	srv.Store(s)
	return s, nil
}

func newUpstream(cfg *config.Config, command []string, uo upstream.Options) (upstream.Upstream, error) {
	switch cfg.Upstream.Transport {
	case config.UpstreamStdio:
		if len(command) == 0 {
			command = cfg.Upstream.Command
		}
		if len(command) == 0 {
			return nil, errors.New("upstream.command: a stdio upstream needs a command (after \"--\" or in upstream.command)")
		}
		up, err := upstream.NewStdio(cfg.Upstream, command, uo)
		if err != nil {
			return nil, fmt.Errorf("upstream: %w", err)
		}
		return up, nil
	case config.UpstreamHTTP:
		if len(command) > 0 {
			return nil, errors.New("upstream.transport is http: a command after \"--\" is not used; start the server separately")
		}
		up, err := upstream.NewHTTP(cfg.Upstream, uo)
		if err != nil {
			return nil, fmt.Errorf("upstream: %w", err)
		}
		return up, nil
	default:
		return nil, fmt.Errorf("upstream.transport %q is not stdio or http", cfg.Upstream.Transport)
	}
}

// Upstream returns the server's upstream (the CLI starts and closes it).
func (s *Server) Upstream() upstream.Upstream { return s.deps.Upstream }

// clientCAFile is the CA bundle the certificate reloader also watches: only when client
// certificates are verified.
func clientCAFile(c config.TLS) string {
	if c.ClientAuth == config.ClientAuthRequest || c.ClientAuth == config.ClientAuthRequire {
		return c.ClientCAFile
	}
	return ""
}
