package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/logbatch"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/procs"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/server"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/sysmon"
)

// runProfiledRuntime is the "runtime-profile" subcommand: the same wiring as
// `mcp-runtime serve` (cmd/mcp-runtime) with a CPU profile written at SIGTERM and a heap
// profile on SIGUSR1, because the runtime itself exposes no pprof endpoint.
//
//	benchruntime runtime-profile -cpuprofile F -heapprofile H --config FILE [-- COMMAND...]
func runProfiledRuntime(args []string) int {
	fs := flag.NewFlagSet("runtime-profile", flag.ContinueOnError)
	cfgFile := fs.String("config", "", "runtime configuration file")
	cpuFile := fs.String("cpuprofile", "", "CPU profile written at exit")
	heapFile := fs.String("heapprofile", "", "heap profile written on SIGUSR1")
	traceFile := fs.String("exectrace", "", "execution trace written at exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, logOut := logbatch.NewJSONLogger(os.Stderr)
	defer func() { _ = logOut.Close(context.Background()) }()
	cfg, err := config.Load(*cfgFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := sysmon.Apply(cfg.Tuning.KeepSchedulerAwake); err != nil { // as mcp-runtime serve does
		fmt.Fprintln(os.Stderr, "runtime-profile: tuning.keepSchedulerAwake:", err)
	}
	if *cpuFile != "" {
		f, err := os.Create(*cpuFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// 1 kHz instead of pprof's 100 Hz: a cell's few seconds of CPU otherwise give too few
		// samples to split the runtime's ~40 µs per request apart. (StartCPUProfile then
		// warns that the rate is already set, and keeps it.)
		runtime.SetCPUProfileRate(1000)
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	if *traceFile != "" {
		stopTrace, err := startExecTrace(*traceFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer stopTrace()
	}
	if *heapFile != "" {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		go func() {
			for range usr1 {
				if f, err := os.Create(*heapFile); err == nil {
					_ = pprof.Lookup("heap").WriteTo(f, 0)
					_ = f.Close()
				}
				if f, err := os.Create(*heapFile + ".goroutines.txt"); err == nil {
					_ = pprof.Lookup("goroutine").WriteTo(f, 1)
					_ = f.Close()
				}
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				fmt.Fprintf(os.Stderr, "memstats: HeapInuse %d KiB, StackInuse %d KiB, Sys %d KiB, goroutines %d, NextGC %d KiB\n",
					m.HeapInuse>>10, m.StackInuse>>10, m.Sys>>10, runtime.NumGoroutine(), m.NextGC>>10)
			}
		}()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	procs.Start(ctx, log, cfg.Tuning.StaticProcs)
	srv, err := server.Build(ctx, cfg, server.Options{Command: fs.Args(), Logger: log, LogOutput: logOut, DrainTimeout: 2 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, hl, err := srv.Listen()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := srv.Upstream().Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	serveErr := srv.Serve(ctx, ln, hl)
	if *heapFile != "" { // every allocation since the start: where the per-request ones come from
		if f, err := os.Create(strings.TrimSuffix(*heapFile, ".heap.pprof") + ".allocs.pprof"); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			_ = f.Close()
		}
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Close(cctx)
	if serveErr != nil {
		fmt.Fprintln(os.Stderr, serveErr)
		return 1
	}
	return 0
}

// startExecTrace writes a Go execution trace to file until the returned stop is called.
// The trace shows what the profiles cannot: how long each goroutine on a request's path
// waits to run, and where in the path the threads sleep and wake.
func startExecTrace(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := trace.Start(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { trace.Stop(); _ = f.Close() }, nil
}
