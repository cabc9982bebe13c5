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
	// Coalesce is how long a relevant file event waits for the rest of its burst (a
	// rotator writes the key and the certificate, the kubelet swaps several links) before
	// one reload. Default 100ms.
	Coalesce time.Duration
}

// Reloader holds the current certificate and swaps it when the files change.
type Reloader struct {
	certFile, keyFile string
	opts              Options
	cert              atomic.Pointer[tls.Certificate]

	mu      sync.Mutex // guards lastSig
	lastSig fileSig
	checks  atomic.Int64 // stat passes after New: tests prove unrelated events cost nothing
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
	if opts.Coalesce <= 0 {
		opts.Coalesce = 100 * time.Millisecond
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
	relevant := watchedNames(r.certFile, r.keyFile)
	tick := time.NewTicker(r.opts.PollInterval)
	defer tick.Stop()
	// pending fires once per burst of relevant events; nil while no burst is open.
	var pending <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil // watcher closed: the poll ticker still runs
				continue
			}
			// Other files share the directory (an audit log next to tls.crt): their
			// events must not cost a stat, let alone a reload.
			if pending == nil && relevant[filepath.Clean(ev.Name)] {
				pending = time.After(r.opts.Coalesce)
			}
		case <-pending:
			pending = nil
			r.reloadLogged()
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			r.opts.Logger.Warn("Certificate watch error", "error", err)
		case <-tick.C:
			r.reloadLogged()
		}
	}
}

// watchedNames are the paths whose events may change the pair: the two files themselves
// (written in place or replaced by rename) and, beside each, the ..data link a Kubernetes
// Secret or ConfigMap volume swaps atomically on update.
func watchedNames(certFile, keyFile string) map[string]bool {
	out := map[string]bool{}
	for _, f := range []string{certFile, keyFile} {
		f = filepath.Clean(f)
		out[f] = true
		out[filepath.Join(filepath.Dir(f), "..data")] = true
	}
	return out
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
	if !force {
		r.checks.Add(1)
	}
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
