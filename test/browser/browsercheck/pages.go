package browsercheck

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"time"
)

//go:embed page
var pageFiles embed.FS

// Pages serves the check's web page from two origins: the allowed one (which the runtime
// under test must list in origins.allowed) and a foreign one (which it must not). Both are
// plain HTTP on loopback: a 127.0.0.1 page is a secure context for Chromium, so it may use
// fetch and wss:// like an HTTPS app would. Different ports make different origins.
type Pages struct {
	// AllowedOrigin is "http://127.0.0.1:PORT" of the allowed page: put it in the runtime's
	// origins.allowed before the check runs.
	AllowedOrigin string
	// ForeignOrigin is "http://127.0.0.1:PORT" of the attacker's page: the runtime must not
	// allow it.
	ForeignOrigin string

	servers []*http.Server
}

// ServePages starts the two page servers. allowedAddr and foreignAddr are listen addresses
// on 127.0.0.1 ("" or "127.0.0.1:0" picks a free port; give a fixed one when the runtime's
// allowlist must be written before the pages exist). Close stops them.
func ServePages(allowedAddr, foreignAddr string) (*Pages, error) {
	content, err := fs.Sub(pageFiles, "page")
	if err != nil {
		return nil, err
	}
	files := http.FileServer(http.FS(content))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		files.ServeHTTP(w, r)
	})
	p := &Pages{}
	for i, addr := range []string{allowedAddr, foreignAddr} {
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("page server %d: listening on %s: %w (use 127.0.0.1:0 for a free port)", i, addr, err)
		}
		origin := "http://" + ln.Addr().String()
		if i == 0 {
			p.AllowedOrigin = origin
		} else {
			p.ForeignOrigin = origin
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		p.servers = append(p.servers, srv)
		go func() { _ = srv.Serve(ln) }()
	}
	if p.AllowedOrigin == p.ForeignOrigin {
		p.Close()
		return nil, errors.New("the allowed and foreign page servers must listen on different ports")
	}
	return p, nil
}

// Close stops both page servers.
func (p *Pages) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range p.servers {
		_ = s.Shutdown(ctx)
	}
}
