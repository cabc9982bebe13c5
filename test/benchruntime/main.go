// Command benchruntime is `make bench-runtime`: it drives MCP tools/call at fixed
// concurrency against the everything-server directly, through a bare
// httputil.ReverseProxy, and through mcp-runtime (TLS, JWT, Origin, rate limit, schema
// validation, audit) in front of an HTTP and a stdio everything-server; it measures the
// hop's CPU per request from /proc, the RSS of idle WebSockets, and a new session's first
// response, and prints the results against the targets of issue #3.
//
// It is a benchmark, not a test: it exits 0 whatever the numbers, and 1 only when it
// cannot run.
//
//	go run ./test/benchruntime [-duration 10s] [-rounds 2] [-concurrency 1,16,64] [-ws 10000]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/sysmon"
)

var nan = math.NaN()

func main() {
	if len(os.Args) > 1 && os.Args[1] == "proxy" {
		os.Exit(runProxy(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "stdio-relay" {
		os.Exit(runStdioRelay(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "runtime-profile" {
		os.Exit(runProfiledRuntime(os.Args[2:]))
	}
	os.Exit(run())
}

type options struct {
	runtimeBin, everything string
	duration, warmup       time.Duration
	rounds                 int
	conc                   []int
	targets                []string
	wsConns, wsDialers     int
	wsHold                 time.Duration
	firstSamples           int
	keep                   bool
	profileDir             string
	execTrace              bool
	hopProcs               int  // GOMAXPROCS for the bare proxy and the runtime → HTTP; 0: Go's default
	schedulerAwake         bool // tuning.keepSchedulerAwake for the runtimes, its GODEBUG for the bare proxies
	staticProcs            bool // tuning.staticProcs for the runtimes; else the bare hops size GOMAXPROCS as they do
	bareGoDefaults         bool // the bare hops with Go's defaults whatever the runtimes' tuning
}

func parseFlags() (options, error) {
	root := moduleRoot()
	var o options
	var conc, targets string
	flag.StringVar(&o.runtimeBin, "runtime", filepath.Join(root, "bin", "mcp-runtime"), "mcp-runtime binary (make runtime-build)")
	flag.StringVar(&o.everything, "everything", envOr("MCP_EVERYTHING_SERVER", filepath.Join(root, "bin", "everything-server-v1.8.0")), "go-sdk everything-server binary")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per cell")
	flag.DurationVar(&o.warmup, "warmup", 0, "unmeasured time per cell before measuring (default duration/5, at most 2s)")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds; the target order alternates between rounds and medians are reported")
	flag.StringVar(&conc, "concurrency", "1,16,64", "comma-separated worker counts")
	flag.StringVar(&targets, "targets", "a,b,c,d,e", "targets to load: a direct, b bare proxy, c runtime→HTTP, d runtime→stdio, e bare stdio relay (the floor of d), f runtime→stdio with TLS, authentication, argument validation, audit and metrics off (not by default: a diagnostic of what the checks cost), g the bare stdio relay and h the bare proxy, each serving TLS with the runtime's certificate (not by default: the floors of d and c with the TLS their targets require)")
	flag.IntVar(&o.wsConns, "ws", 10000, "idle WebSocket connections to hold (0 skips)")
	flag.IntVar(&o.wsDialers, "ws-dialers", 32, "concurrent WebSocket dialers")
	flag.DurationVar(&o.wsHold, "ws-hold", 3*time.Second, "how long the idle WebSockets are held before RSS is read")
	flag.IntVar(&o.firstSamples, "first", 30, "new sessions timed for the first-response measurement")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, logs, audit)")
	flag.IntVar(&o.hopProcs, "hop-gomaxprocs", 0, "GOMAXPROCS of the two hops compared on CPU, the bare proxy (b) and the runtime → HTTP (c); 0 leaves Go's default (the runtime → stdio is left alone: its child would inherit it)")
	flag.BoolVar(&o.staticProcs, "static-procs", false, "run the runtimes with tuning.staticProcs and every hop with Go's default GOMAXPROCS; false (the runtime's default): the runtimes size GOMAXPROCS to the load and so do the bare hops (b, e, g, h), with the same controller (internal/runtime/procs)")
	flag.BoolVar(&o.bareGoDefaults, "bare-go-defaults", false, "run the bare hops (b, e, g, h) with Go's default scheduler settings whatever the runtimes run with: a plain ReverseProxy as anyone would deploy it, instead of one with the runtimes' tuning")
	flag.BoolVar(&o.schedulerAwake, "keep-scheduler-awake", true, "run the runtimes with tuning.keepSchedulerAwake and the bare proxies (b, h) with the same GODEBUG="+sysmon.Setting+" (internal/runtime/sysmon); false: Go's defaults for all")
	flag.StringVar(&o.profileDir, "profile", "", "run the runtime as this harness's runtime-profile subcommand (same wiring as mcp-runtime serve) and write CPU, heap and allocation profiles here, and a CPU profile of the bare proxy (not for headline numbers)")
	flag.BoolVar(&o.execTrace, "exectrace", false, "with -profile: also write Go execution traces of the runtime and the bare stdio relay (for hack/trace-critpath.py; tracing costs the traced processes CPU, which their CPU profiles then include)")
	flag.Parse()
	if o.warmup == 0 {
		o.warmup = min(o.duration/5, 2*time.Second)
	}
	for _, f := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 4096 {
			return o, fmt.Errorf("-concurrency: %q is not a count between 1 and 4096", f)
		}
		o.conc = append(o.conc, n)
	}
	for _, f := range strings.Split(targets, ",") {
		f = strings.TrimSpace(f)
		if _, known := targetLabels[f]; !known {
			return o, fmt.Errorf("-targets: %q is not one of %s", f, strings.Join(targetKeys, ", "))
		}
		o.targets = append(o.targets, f)
	}
	if o.execTrace && o.profileDir == "" {
		return o, errors.New("-exectrace needs -profile DIR (the traces are written there)")
	}
	if o.rounds < 1 || o.duration <= 0 {
		return o, errors.New("-rounds and -duration must be positive")
	}
	for _, f := range []string{o.runtimeBin, o.everything} {
		if _, err := os.Stat(f); err != nil {
			return o, fmt.Errorf("%s is missing: run `make runtime-build bin/everything-server-v1.8.0` (%w)", f, err)
		}
	}
	return o, nil
}

func run() int {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchruntime:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	raiseFDLimit(o.wsConns)

	dir, err := os.MkdirTemp("", "benchruntime-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchruntime:", err)
		return 1
	}
	if o.keep {
		fmt.Printf("work directory: %s\n", dir)
	} else {
		defer func() { _ = os.RemoveAll(dir) }()
	}

	env := describeMachine()
	fmt.Print(env)
	b := &bench{o: o, dir: dir}
	defer b.stopAll()
	if err := b.setup(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "benchruntime: cannot run:", err)
		return 1
	}
	b.runRounds(ctx)
	b.runFirstResponse(ctx)
	b.stopAll()
	if o.wsConns > 0 {
		if err := b.runWebSockets(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "benchruntime: idle WebSockets:", err)
		}
	}
	loadEnd := loadavg()
	fmt.Println()
	fmt.Print(b.report(env, loadEnd))
	return 0
}

// bench holds the processes and results of one run.
type bench struct {
	o       options
	dir     string
	pk      *pki
	procs   []*proc
	targets map[string]*target
	cells   []cellResult
	first   map[string]firstResult
	ws      *wsResult
	wsErr   string
}

type firstResult struct {
	samples  []time.Duration
	failures int
	firstErr string
}

var targetLabels = map[string]string{
	"a": "(a) direct HTTP",
	"b": "(b) bare ReverseProxy",
	"c": "(c) runtime → HTTP",
	"d": "(d) runtime → stdio",
	"e": "(e) bare stdio relay",
	"f": "(f) runtime → stdio, checks off",
	"g": "(g) bare stdio relay over TLS",
	"h": "(h) bare ReverseProxy over TLS",
}

// targetKeys are the keys of targetLabels in order (a, b, …).
var targetKeys = slices.Sorted(maps.Keys(targetLabels))

func (b *bench) start(name string, argv []string, env ...string) (*proc, error) {
	p, err := startProc(b.dir, name, argv, env)
	if err != nil {
		return nil, err
	}
	b.procs = append(b.procs, p)
	return p, nil
}

// hopEnv is the extra environment of the hops compared on CPU.
func (b *bench) hopEnv() []string {
	if b.o.hopProcs <= 0 {
		return nil
	}
	return []string{"GOMAXPROCS=" + strconv.Itoa(b.o.hopProcs)}
}

// proxyEnv is the extra environment of the bare proxies: hopEnv and, with
// -keep-scheduler-awake, the GODEBUG the runtime gives itself (package sysmon).
func (b *bench) proxyEnv() []string {
	env := b.hopEnv()
	if b.o.schedulerAwake && !b.o.bareGoDefaults {
		env = append(env, "GODEBUG="+sysmon.Setting)
	}
	return env
}

// bareFlags are the flags of the bare hops (proxy, stdio-relay) that give them the
// runtimes' GOMAXPROCS sizing, unless -static-procs or -bare-go-defaults.
func (b *bench) bareFlags() []string {
	if b.o.staticProcs || b.o.bareGoDefaults {
		return nil
	}
	return []string{"-size-procs"}
}

// startListener starts a process listening on a free address given to argv, and waits
// until it accepts connections.
func (b *bench) startListener(ctx context.Context, name string, argv func(addr string) []string, env ...string) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	p, err := b.start(name, argv(addr), env...)
	if err != nil {
		return nil, "", err
	}
	return p, addr, waitTCP(ctx, p, addr)
}

func (b *bench) stopAll() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].stop()
	}
	b.procs = nil
}

func (b *bench) setup(ctx context.Context) error {
	var err error
	// Certificates in a directory of their own, as in a Secret volume: the runtime watches
	// the certificate's directory, and the logs written next to it would wake the watcher.
	pkiDir := filepath.Join(b.dir, "pki")
	if err := os.Mkdir(pkiDir, 0o700); err != nil {
		return err
	}
	if b.pk, err = newPKI(pkiDir); err != nil {
		return err
	}
	token, err := b.pk.token("bench")
	if err != nil {
		return err
	}
	esAddr, err := freeAddr()
	if err != nil {
		return err
	}
	es, err := b.start("everything-http", []string{b.o.everything, "-http", esAddr, "-stateless=false"})
	if err != nil {
		return err
	}
	if err := waitTCP(ctx, es, esAddr); err != nil {
		return err
	}
	esPID := func() int { return es.pid() }

	self, err := os.Executable()
	if err != nil {
		return err
	}
	px, proxyAddr, err := b.startListener(ctx, "proxy", func(addr string) []string {
		args := append([]string{self, "proxy", "-listen", addr, "-upstream", "http://" + esAddr}, b.bareFlags()...)
		if b.o.profileDir != "" { // the floor's profile, to compare the runtime's with
			args = append(args, "-cpuprofile", filepath.Join(b.o.profileDir, "proxy.cpu.pprof"))
		}
		return args
	}, b.proxyEnv()...)
	if err != nil {
		return err
	}

	rc, cAddr, err := b.startRuntime(ctx, "runtime-c", "http://"+esAddr+"/mcp", 0, nil)
	if err != nil {
		return err
	}
	rd, dAddr, err := b.startRuntime(ctx, "runtime-d", "", 0, nil)
	if err != nil {
		return err
	}
	var rf *proc
	var fAddr string
	if slices.Contains(b.o.targets, "f") {
		rf, fAddr, err = b.startRuntime(ctx, "runtime-f", "", 0, checksOff)
		if err != nil {
			return err
		}
	}
	re, relayAddr, err := b.startListener(ctx, "stdio-relay", func(addr string) []string {
		args := append([]string{self, "stdio-relay", "-listen", addr}, b.bareFlags()...)
		if b.o.execTrace {
			args = append(args, "-exectrace", filepath.Join(b.o.profileDir, "stdio-relay.trace"))
		}
		return append(args, "--", b.o.everything)
	})
	if err != nil {
		return err
	}
	tlsFiles := []string{"-tls-cert", b.pk.certFile, "-tls-key", b.pk.keyFile}
	var rg, ph *proc
	var gAddr, hAddr string
	if slices.Contains(b.o.targets, "g") {
		rg, gAddr, err = b.startListener(ctx, "stdio-relay-tls", func(addr string) []string {
			return append(append(append([]string{self, "stdio-relay", "-listen", addr}, b.bareFlags()...), tlsFiles...), "--", b.o.everything)
		})
		if err != nil {
			return err
		}
	}
	if slices.Contains(b.o.targets, "h") {
		ph, hAddr, err = b.startListener(ctx, "proxy-tls", func(addr string) []string {
			return append(append([]string{self, "proxy", "-listen", addr, "-upstream", "http://" + esAddr}, b.bareFlags()...), tlsFiles...)
		}, b.proxyEnv()...)
		if err != nil {
			return err
		}
	}
	childPID := func(p *proc) func() int {
		child := 0
		return func() int {
			if child == 0 {
				child = childOf(p.pid())
			}
			return child
		}
	}

	rtHeader := http.Header{"Authorization": {"Bearer " + token}, "Origin": {benchOrigin}}
	b.targets = map[string]*target{
		"a": {key: "a", url: "http://" + esAddr + "/mcp", upstream: esPID},
		"b": {key: "b", url: "http://" + proxyAddr + "/mcp", proc: px, upstream: esPID},
		"c": {key: "c", url: "https://" + cAddr + "/mcp", tls: true, header: rtHeader, proc: rc, upstream: esPID},
		"d": {key: "d", url: "https://" + dAddr + "/mcp", tls: true, header: rtHeader, proc: rd, upstream: childPID(rd)},
		"e": {key: "e", url: "http://" + relayAddr + "/mcp", proc: re, upstream: childPID(re)},
	}
	if rf != nil {
		b.targets["f"] = &target{key: "f", url: "http://" + fAddr + "/mcp", proc: rf, upstream: childPID(rf)}
	}
	if ph != nil {
		b.targets["h"] = &target{key: "h", url: "https://" + hAddr + "/mcp", tls: true, proc: ph, upstream: esPID}
	}
	if rg != nil {
		b.targets["g"] = &target{key: "g", url: "https://" + gAddr + "/mcp", tls: true, proc: rg, upstream: childPID(rg)}
	}
	// One call through every target first: a broken setup stops the run here.
	for _, k := range targetKeys {
		t := b.targets[k]
		if t == nil {
			continue
		}
		t.label = targetLabels[k]
		tr := newTransport(t, 1, b.pk)
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		s, err := openSession(ctx, t, client)
		if err == nil {
			err = s.callTool(ctx)
			s.close(ctx)
		}
		tr.CloseIdleConnections()
		if err != nil {
			msg := ""
			if t.proc != nil {
				msg = "\n" + t.proc.tail(5)
			}
			return fmt.Errorf("%s: first tools/call: %w%s", t.label, err, msg)
		}
	}
	return nil
}

// checksOff turns off what the runtime does beyond relaying that a config can turn off: TLS,
// authentication, argument validation, audit and metrics (target f). What is left — HTTP,
// JSON-RPC checks, sessions, the Origin check, rate limits, the access log — is the
// runtime's own floor, to set (d) against (e).
func checksOff(c *config.Config) {
	c.TLS = config.TLS{Insecure: true}
	c.Auth = config.Auth{Anonymous: true}
	c.Tools.SkipArgumentValidation = true
	c.Audit = config.Audit{Disabled: true}
	c.Metrics.Disabled = true
}

// runtimeConfig is the config of a runtime target (see startRuntime).
func (b *bench) runtimeConfig(name, addr, health, upstreamURL string, maxConns int, adjust func(*config.Config)) (config.Config, error) {
	maxConns = max(maxConns, 10000)
	cfg := config.Config{
		Listen:   config.Listen{Address: addr, HealthAddress: health},
		TLS:      config.TLS{CertFile: b.pk.certFile, KeyFile: b.pk.keyFile},
		Endpoint: config.Endpoint{Path: "/mcp", PublicURL: benchAudience, Transports: []string{config.TransportStreamableHTTP, config.TransportWebSocket}},
		Origins:  config.Origins{Allowed: []string{benchOrigin}},
		Auth: config.Auth{JWT: []config.JWTProvider{{
			Issuer: benchIssuer, KeyFiles: []config.KeyFile{{Path: b.pk.jwtPubFile, Algorithm: "ES256"}},
		}}},
		Limits: config.Limits{
			RequestsPerSecond: 1e6, Burst: 1e6,
			MaxConnections: maxConns, MaxConnectionsPerPrincipal: maxConns,
		},
		Audit:    config.Audit{File: filepath.Join(b.dir, name+"-audit.log")},
		Upstream: config.Upstream{RequestTimeout: config.D(30 * time.Second), ShutdownGrace: config.D(2 * time.Second)},
		Tuning:   config.Tuning{KeepSchedulerAwake: b.o.schedulerAwake, StaticProcs: b.o.staticProcs},
	}
	if upstreamURL != "" {
		cfg.Upstream.Transport, cfg.Upstream.URL = config.UpstreamHTTP, upstreamURL
	}
	if adjust != nil {
		adjust(&cfg)
	}
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("bench runtime config: %w", err)
	}
	return cfg, nil
}

// startRuntime writes a config and starts bin/mcp-runtime: TLS, JWT (ES256 key file),
// Origin allowlist, a rate limit set far above the offered load, schema validation (on by
// default) and audit to a file. upstreamURL "" means the stdio everything-server; adjust,
// if not nil, changes the config before it is checked.
func (b *bench) startRuntime(ctx context.Context, name, upstreamURL string, maxConns int, adjust func(*config.Config)) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	health, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	cfg, err := b.runtimeConfig(name, addr, health, upstreamURL, maxConns, adjust)
	if err != nil {
		return nil, "", err
	}
	data, err := cfg.Marshal()
	if err != nil {
		return nil, "", err
	}
	file := filepath.Join(b.dir, name+".yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return nil, "", err
	}
	argv := []string{b.o.runtimeBin, "serve", "--config", file, "--drain-timeout", "2s"}
	if b.o.profileDir != "" {
		self, err := os.Executable()
		if err != nil {
			return nil, "", err
		}
		argv = []string{self, "runtime-profile", "--config", file,
			"-cpuprofile", filepath.Join(b.o.profileDir, name+".cpu.pprof"),
			"-heapprofile", filepath.Join(b.o.profileDir, name+".heap.pprof")}
		if b.o.execTrace {
			argv = append(argv, "-exectrace", filepath.Join(b.o.profileDir, name+".trace"))
		}
	}
	var env []string
	if upstreamURL == "" {
		argv = append(argv, "--", b.o.everything)
	} else {
		env = b.hopEnv()
	}
	p, err := b.start(name, argv, env...)
	if err != nil {
		return nil, "", err
	}
	if err := waitReady(ctx, p, health); err != nil {
		return nil, "", err
	}
	return p, addr, nil
}

// runRounds runs every (target, concurrency) cell once per round. The target order flips
// from one concurrency to the next and from one round to the next, so slow drift in the
// machine's load (other builds on the same cores) does not favour one target.
func (b *bench) runRounds(ctx context.Context) {
	total := b.o.rounds * len(b.o.conc) * len(b.o.targets)
	per := b.o.warmup + b.o.duration + time.Second
	fmt.Printf("%d cells × ~%s ≈ %s\n\n", total, per, time.Duration(total)*per)
	for r := range b.o.rounds {
		for ci, conc := range b.o.conc {
			order := slices.Clone(b.o.targets)
			if (r+ci)%2 == 1 {
				slices.Reverse(order)
			}
			for _, k := range order {
				if ctx.Err() != nil {
					return
				}
				res := runCell(ctx, b.targets[k], b.pk, conc, b.o.warmup, b.o.duration)
				res.round = r + 1
				b.cells = append(b.cells, res)
				printCell(b.targets[k], res)
			}
		}
	}
}

func (b *bench) runFirstResponse(ctx context.Context) {
	b.first = map[string]firstResult{}
	for _, k := range b.o.targets {
		s, f, e := firstResponse(ctx, b.targets[k], b.pk, b.o.firstSamples)
		b.first[k] = firstResult{samples: s, failures: f, firstErr: e}
		fmt.Printf("first response %-22s median %s (n=%d, failures %d)\n", b.targets[k].label, fmtMs(median(s)), len(s), f)
	}
}

// runWebSockets starts a fresh runtime → stdio (so earlier load does not inflate its
// baseline), reads its RSS, holds the idle WebSockets and reads it again.
func (b *bench) runWebSockets(ctx context.Context) error {
	token, err := b.pk.token("bench")
	if err != nil {
		return err
	}
	p, addr, err := b.startRuntime(ctx, "runtime-ws", "", b.o.wsConns+1000, nil)
	if err != nil {
		b.wsErr = err.Error()
		return err
	}
	defer b.stopAll()
	t := &target{key: "d", label: targetLabels["d"], url: "https://" + addr + "/mcp", tls: true, proc: p,
		header: http.Header{"Authorization": {"Bearer " + token}, "Origin": {benchOrigin}}}
	// Warm the runtime (TLS, auth, upstream, schema cache) like a server that has served.
	for range 3 {
		tr := newTransport(t, 1, b.pk)
		if s, err := openSession(ctx, t, &http.Client{Transport: tr, Timeout: 30 * time.Second}); err == nil {
			_ = s.callTool(ctx)
			s.close(ctx)
		}
		tr.CloseIdleConnections()
	}
	sleep(ctx, time.Second)
	fmt.Printf("\nholding %d idle WebSockets on a fresh runtime → stdio…\n", b.o.wsConns)
	var whileHeld func(int)
	if b.o.profileDir != "" {
		whileHeld = func(pid int) { // heap profile of the runtime with the sockets open
			_ = syscall.Kill(pid, syscall.SIGUSR1)
			sleep(ctx, time.Second)
		}
	}
	res := holdIdleWebSockets(ctx, t, b.pk, b.o.wsConns, b.o.wsDialers, b.o.wsHold, whileHeld)
	b.ws = &res
	fmt.Printf("  open %d/%d in %s, dropped %d, RSS %d → %d KiB: %.1f KiB per connection\n",
		res.open, res.want, res.dialTime.Round(time.Millisecond), res.dropped, res.rssBefore, res.rssAfter, res.perConnKiB)
	if res.firstErr != "" {
		fmt.Printf("  first dial error: %s\n", res.firstErr)
	}
	return nil
}

// raiseFDLimit lifts the soft open-files limit to the hard one (inherited by the runtime)
// and warns when idle WebSockets would not fit.
func raiseFDLimit(ws int) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	if need := uint64(ws) + 512; l.Cur < need {
		fmt.Printf("warning: open-files limit %d < %d needed for %d WebSockets; raise `ulimit -n` or lower -ws\n", l.Cur, need, ws)
	}
}

func describeMachine() string {
	var sb strings.Builder
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	fmt.Fprintf(&sb, "benchruntime %s, %s/%s, %d CPUs (%s)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), model)
	fmt.Fprintf(&sb, "loadavg at start: %s\n", loadavg())
	return sb.String()
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func selfPID() int { return os.Getpid() }

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// moduleRoot walks up from the working directory to the go.mod.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}
