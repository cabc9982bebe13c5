// Package tlsreload serves a certificate and key from files and reloads them when they change
// on disk, so a rotated certificate (cert-manager renewing a Secret volume) is picked up by new
// handshakes without a restart and without dropping open connections.
package tlsreload

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// Options tune a Reloader. The zero value is safe.
type Options struct {
	// PollInterval is the stat fallback for file systems where fsnotify misses events.
	// Default 30s.
	PollInterval time.Duration
	// Logger receives reload outcomes. Default slog.Default().
	Logger *slog.Logger
	// OnReload is called after each successful reload (tests, metrics).
	OnReload func(*tls.Certificate)
}

// Reloader holds the current certificate and swaps it when the files change.
type Reloader struct {
	certFile, keyFile string
	opts              Options
	cert              atomic.Pointer[tls.Certificate]

	mu      sync.Mutex // guards lastSig
	lastSig fileSig
}

// fileSig identifies the content state of both files cheaply (size + mtime + inode target).
type fileSig struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
	certPath, keyPath string // symlink-resolved paths: a Kubernetes ..data swap changes them
}

// New loads the pair once; a missing or invalid pair at start is an error.
func New(certFile, keyFile string, opts Options) (*Reloader, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, opts: opts}
	if _, err := r.reload(true); err != nil {
		return nil, err
	}
	return r, nil
}

// GetCertificate is the tls.Config callback: every handshake sees the newest certificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Current returns the certificate in use.
func (r *Reloader) Current() *tls.Certificate { return r.cert.Load() }

// Run watches the files until ctx ends. Watch errors fall back to polling only.
func (r *Reloader) Run(ctx context.Context) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w, err := fsnotify.NewWatcher(); err != nil {
		r.opts.Logger.Warn("Certificate watch unavailable, polling only", "error", err)
	} else {
		defer func() { _ = w.Close() }()
		// Watch the directories, not the files: Secret volumes replace a ..data symlink,
		// and editors/rotators replace files by rename, which drops file watches.
		for _, dir := range uniqueDirs(r.certFile, r.keyFile) {
			if err := w.Add(dir); err != nil {
				r.opts.Logger.Warn("Certificate directory watch failed, polling", "dir", dir, "error", err)
			}
		}
		events, errs = w.Events, w.Errors
	}
	tick := time.NewTicker(r.opts.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			// Any event in the directory may be the swap; reload is cheap and idempotent.
			r.reloadLogged()
		case err := <-errs:
			r.opts.Logger.Warn("Certificate watch error", "error", err)
		case <-tick.C:
			r.reloadLogged()
		}
	}
}

func (r *Reloader) reloadLogged() {
	changed, err := r.reload(false)
	if err != nil {
		// Keep serving the previous certificate: a half-written pair must not take the server down.
		r.opts.Logger.Error("Certificate reload failed, keeping the previous certificate", "error", err)
		return
	}
	if changed {
		leaf := r.cert.Load().Leaf
		r.opts.Logger.Info("Certificate reloaded", "subject", leaf.Subject.String(), "notAfter", leaf.NotAfter)
	}
}

// reload loads the pair when the files changed since the last load (or when forced).
func (r *Reloader) reload(force bool) (bool, error) {
	sig, err := stat(r.certFile, r.keyFile)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !force && sig == r.lastSig {
		return false, nil
	}
	pair, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return false, fmt.Errorf("loading TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return false, fmt.Errorf("parsing TLS certificate %s: %w", r.certFile, err)
		}
	}
	old := r.cert.Load()
	r.lastSig = sig
	if old != nil && bytes.Equal(old.Certificate[0], pair.Certificate[0]) {
		return false, nil
	}
	r.cert.Store(&pair)
	if r.opts.OnReload != nil && old != nil {
		r.opts.OnReload(&pair)
	}
	return old != nil, nil
}

func stat(certFile, keyFile string) (fileSig, error) {
	var s fileSig
	for _, f := range []struct {
		name string
		mod  *time.Time
		size *int64
		path *string
	}{{certFile, &s.certMod, &s.certSize, &s.certPath}, {keyFile, &s.keyMod, &s.keySize, &s.keyPath}} {
		fi, err := os.Stat(f.name)
		if err != nil {
			return s, fmt.Errorf("reading TLS file: %w", err)
		}
		*f.mod, *f.size = fi.ModTime(), fi.Size()
		if p, err := filepath.EvalSymlinks(f.name); err == nil {
			*f.path = p
		}
	}
	return s, nil
}

func uniqueDirs(files ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range files {
		d := filepath.Dir(f)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// ServerConfig builds the listener's tls.Config from the runtime config: TLS 1.2 minimum
// (1.3 when configured), certificates from r, optional client-certificate verification.
func ServerConfig(c config.TLS, r *Reloader) (*tls.Config, error) {
	if r == nil {
		return nil, errors.New("tlsreload: no certificate source")
	}
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if c.MinVersion == "1.3" {
		tc.MinVersion = tls.VersionTLS13
	}
	switch c.ClientAuth {
	case "", config.ClientAuthNone:
	case config.ClientAuthRequest, config.ClientAuthRequire:
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading tls.clientCAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.clientCAFile %s holds no PEM certificate", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if c.ClientAuth == config.ClientAuthRequire {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	default:
		return nil, fmt.Errorf("tls.clientAuth %q is not one of none, request, require", c.ClientAuth)
	}
	return tc, nil
}
