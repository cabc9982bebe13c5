package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/procs"
)

// proxyMaxBody matches the runtime's default limits.maxMessageBytes.
const proxyMaxBody = 1 << 20

// runProxy is the "proxy" subcommand: a bare httputil.ReverseProxy, the floor any HTTP
// proxy hop pays. It prints its address on stdout and serves until killed.
func runProxy(args []string) int {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	upstream := fs.String("upstream", "", "upstream base URL, e.g. http://127.0.0.1:8080")
	cpuFile := fs.String("cpuprofile", "", "CPU profile written at SIGTERM")
	tlsFiles := addTLSFlags(fs)
	sizeProcs := addProcsFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	sizeProcs.start()
	if *cpuFile != "" {
		f, err := os.Create(*cpuFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "proxy: %v\n", err)
			return 1
		}
		// 1 kHz instead of pprof's 100 Hz: a cell's few seconds of CPU otherwise give too few
		// samples to split the runtime's ~40 µs per request apart. (StartCPUProfile then
		// warns that the rate is already set, and keeps it.)
		runtime.SetCPUProfileRate(1000)
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "proxy: %v\n", err)
			return 1
		}
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
		go func() {
			<-term
			pprof.StopCPUProfile()
			_ = f.Close()
			os.Exit(0)
		}()
	}
	u, err := url.Parse(*upstream)
	if err != nil || u.Host == "" {
		fmt.Fprintf(os.Stderr, "proxy: bad -upstream %q\n", *upstream)
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "proxy: %v\n", err)
		return 1
	}
	fmt.Println(ln.Addr().String())
	srv := &http.Server{Handler: newBareProxy(u), ReadHeaderTimeout: 10 * time.Second}
	if err := tlsFiles.serve(srv, ln); err != nil {
		fmt.Fprintf(os.Stderr, "proxy: %v\n", err)
		return 1
	}
	return 0
}

// newBareProxy relays to upstream with two fixes every fair proxy needs:
//   - the request body is read whole (size-limited) before relaying: otherwise the server
//     closes the body while the transport still reads it and ~1% of streamed responses are
//     cut short (golang/go#40747); the runtime buffers too, since validation needs the body;
//   - MaxIdleConnsPerHost is raised from Go's default 2, which cost ~15% at 64 clients.
func newBareProxy(upstream *url.URL) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(upstream) },
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		ErrorLog: nil,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, proxyMaxBody))
		if err != nil {
			http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		rp.ServeHTTP(w, r)
	})
}

// procsFlag is the -size-procs flag of the bare hops.
type procsFlag struct{ on *bool }

func addProcsFlag(fs *flag.FlagSet) procsFlag {
	return procsFlag{fs.Bool("size-procs", false, "size GOMAXPROCS to the load as mcp-runtime serve does (internal/runtime/procs)")}
}

// start runs the runtime's GOMAXPROCS controller for the life of the process, when on.
func (f procsFlag) start() {
	procs.Start(context.Background(), slog.New(slog.DiscardHandler), !*f.on)
}

// tlsFlags are the -tls-cert and -tls-key flags of the floors that can serve HTTPS (targets
// g and h).
type tlsFlags struct{ cert, key *string }

func addTLSFlags(fs *flag.FlagSet) tlsFlags {
	return tlsFlags{
		cert: fs.String("tls-cert", "", "serve HTTPS with this certificate (and -tls-key)"),
		key:  fs.String("tls-key", "", "private key of -tls-cert"),
	}
}

// serve serves srv on ln, over TLS when a certificate was given: TLS 1.2 or later and
// HTTP/1.1, which the load generator speaks to every target.
func (f tlsFlags) serve(srv *http.Server, ln net.Listener) error {
	if *f.cert == "" {
		return srv.Serve(ln)
	}
	srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	return srv.ServeTLS(ln, *f.cert, *f.key)
}
