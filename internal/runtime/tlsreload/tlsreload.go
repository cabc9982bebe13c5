// Package tlsreload serves a certificate and key (and optionally the CA bundle that verifies
// client certificates) from files and reloads them when they change on disk, so a rotated
// certificate (cert-manager renewing a Secret volume) or a replaced client CA is picked up by
// new handshakes without a restart and without dropping open connections.
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
	"slices"
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
	// ClientCAFile, when set, is a PEM bundle of CAs for client certificates, loaded and
	// reloaded with the pair (ServerConfig verifies client certificates against it).
	ClientCAFile string
}

// Reloader holds the current certificate (and client CAs) and swaps them when the files
// change.
type Reloader struct {
	certFile, keyFile string
	opts              Options
	cert              atomic.Pointer[tls.Certificate]
	clientCAs         atomic.Pointer[clientCAs]

	mu        sync.Mutex   // guards lastSig and lastCASig
	lastSig   fileSig      // of the certificate and key files
	lastCASig fileSig      // of the client CA bundle
	checks    atomic.Int64 // stat passes after New: tests prove unrelated events cost nothing
}

// clientCAs is one loaded client CA bundle.
type clientCAs struct {
	pem  []byte
	pool *x509.CertPool
}

// fileSig identifies the content state of up to two files cheaply (size + mtime + the
// symlink-resolved path, which a Kubernetes ..data swap changes), in the order stat got them.
type fileSig [2]struct {
	mod  time.Time
	size int64
	path string
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

// ClientCAs returns the client CA pool in use (nil without Options.ClientCAFile).
func (r *Reloader) ClientCAs() *x509.CertPool {
	if c := r.clientCAs.Load(); c != nil {
		return c.pool
	}
	return nil
}

// files are the watched paths: the pair, then the client CA bundle if any.
func (r *Reloader) files() []string {
	if r.opts.ClientCAFile == "" {
		return []string{r.certFile, r.keyFile}
	}
	return []string{r.certFile, r.keyFile, r.opts.ClientCAFile}
}

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
		for _, dir := range uniqueDirs(r.files()...) {
			if err := w.Add(dir); err != nil {
				r.opts.Logger.Warn("Certificate directory watch failed, polling", "dir", dir, "error", err)
			}
		}
		events, errs = w.Events, w.Errors
	}
	relevant := watchedNames(r.files()...)
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
func watchedNames(files ...string) map[string]bool {
	out := map[string]bool{}
	for _, f := range files {
		f = filepath.Clean(f)
		out[f] = true
		out[filepath.Join(filepath.Dir(f), "..data")] = true
	}
	return out
}

func (r *Reloader) reloadLogged() {
	changed, err := r.reload(false)
	if err != nil {
		// Keep serving what loaded last: a half-written file must not take the server down.
		r.opts.Logger.Error("Certificate reload failed, keeping the previous certificate or client CA bundle", "error", err)
	}
	if changed {
		leaf := r.cert.Load().Leaf
		r.opts.Logger.Info("Certificate reloaded", "subject", leaf.Subject.String(), "notAfter", leaf.NotAfter)
	}
}

// loadClientCAs reads the client CA bundle; a file without a PEM certificate is an error
// (serving with an empty pool would refuse every client).
func (r *Reloader) loadClientCAs() (*clientCAs, error) {
	pem, err := os.ReadFile(r.opts.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("reading tls.clientCAFile: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls.clientCAFile %s holds no PEM certificate", r.opts.ClientCAFile)
	}
	return &clientCAs{pem: pem, pool: pool}, nil
}

// reload loads the pair when the files changed since the last load (or when forced).
func (r *Reloader) reload(force bool) (bool, error) {
	if !force {
		r.checks.Add(1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// The pair and the client CA bundle load independently: a broken bundle must not keep a
	// renewed certificate out (the old one would expire), nor a broken pair a new bundle.
	changed, pairErr := r.reloadPairLocked(force)
	var caErr error
	if r.opts.ClientCAFile != "" {
		caErr = r.reloadClientCAsLocked(force)
	}
	return changed, errors.Join(pairErr, caErr)
}

// reloadPairLocked loads the certificate pair if its files changed (or when forced) and
// reports whether a different certificate is now served.
func (r *Reloader) reloadPairLocked(force bool) (bool, error) {
	sig, err := stat(r.certFile, r.keyFile)
	if err != nil {
		return false, err
	}
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
	if old != nil && sameChain(old.Certificate, pair.Certificate) {
		return false, nil
	}
	r.cert.Store(&pair)
	if r.opts.OnReload != nil && old != nil {
		r.opts.OnReload(&pair)
	}
	return old != nil, nil
}

// sameChain reports whether two certificate chains are the same, intermediates included:
// a file that gained or changed an intermediate while the leaf stayed must be served anew.
func sameChain(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, bytes.Equal)
}

// reloadClientCAsLocked loads the client CA bundle if its file changed (or when forced).
func (r *Reloader) reloadClientCAsLocked(force bool) error {
	sig, err := stat(r.opts.ClientCAFile)
	if err != nil {
		return err
	}
	if !force && sig == r.lastCASig {
		return nil
	}
	cas, err := r.loadClientCAs()
	if err != nil {
		return err
	}
	r.lastCASig = sig
	old := r.clientCAs.Load()
	if old != nil && bytes.Equal(old.pem, cas.pem) {
		return nil
	}
	r.clientCAs.Store(cas)
	if old != nil {
		r.opts.Logger.Info("Client CA bundle reloaded", "file", r.opts.ClientCAFile)
	}
	return nil
}

func stat(files ...string) (fileSig, error) {
	var s fileSig
	for i, name := range files {
		fi, err := os.Stat(name)
		if err != nil {
			return s, fmt.Errorf("reading TLS file: %w", err)
		}
		s[i].mod, s[i].size = fi.ModTime(), fi.Size()
		if p, err := filepath.EvalSymlinks(name); err == nil {
			s[i].path = p
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
// (1.3 when configured), certificates from r, optional client-certificate verification
// against the client CAs r loaded (made with Options.ClientCAFile = c.ClientCAFile); each
// handshake verifies with the bundle current at that moment.
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
		if r.opts.ClientCAFile == "" || r.opts.ClientCAFile != c.ClientCAFile {
			return nil, fmt.Errorf("tls.clientCAFile %q is not the client CA bundle the certificate reloader watches (%q)", c.ClientCAFile, r.opts.ClientCAFile)
		}
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if c.ClientAuth == config.ClientAuthRequire {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
		tc.GetConfigForClient = r.configWithCurrentCAs(tc)
	default:
		return nil, fmt.Errorf("tls.clientAuth %q is not one of none, request, require", c.ClientAuth)
	}
	return tc, nil
}

// configWithCurrentCAs returns a GetConfigForClient callback that hands each handshake base
// with the current client CA pool; the copy is made once per pool, not per handshake.
func (r *Reloader) configWithCurrentCAs(base *tls.Config) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	type derived struct {
		pool *x509.CertPool
		conf *tls.Config
	}
	var cur atomic.Pointer[derived]
	return func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool := r.ClientCAs()
		if d := cur.Load(); d != nil && d.pool == pool {
			return d.conf, nil
		}
		conf := base.Clone()
		conf.GetConfigForClient = nil
		conf.ClientCAs = pool
		cur.Store(&derived{pool: pool, conf: conf})
		return conf, nil
	}
}
