// Package sysmon sets the runtime's own GODEBUG at start (Apply): it drops http2debug, which
// would log request headers, and under tuning.keepSchedulerAwake it keeps the Go
// scheduler's monitor thread (sysmon) from polling every 20 µs
// each time the process wakes from idle, which cost a request/response relay a sixth of its
// CPU at low concurrency; `mcp-runtime serve` uses it under tuning.keepSchedulerAwake.
//
// sysmon sleeps for good while every P is idle, and the next system call wakes it with its
// polling interval reset to 20 µs; it backs off to 10 ms only after a millisecond without
// work for it (runtime/proc.go, golang/go#18236). A relay serving one request at a time goes
// idle between requests, so every request restarts the fast polling: on a 2-vCPU machine
// that was 9–15% of the runtime's CPU in `perf`, and the runtime's CPU per request at one
// connection fell by 16–20% without it (docs/benchmarks.md). The only switch is the
// runtime's debug variable schedtrace: while it is set, sysmon never sleeps for good — it
// wakes every 10 ms when idle, ~4 ms of CPU per second here, which is why the runtime does
// not do this by default — and prints one scheduler summary line to stderr per period. It
// is read at process start only, so Ensure re-executes the binary with
// GODEBUG=schedtrace=2147483647 (the longest period, ~24.8 days; the first line comes at
// start on a host up longer than that) and Restore puts the environment back in the new
// process, so upstream processes inherit the environment the runtime was given.
package sysmon

import (
	"os"
	"runtime"
	"strings"
	"syscall"
)

// Setting is what Apply adds to GODEBUG when keep.
const Setting = "schedtrace=2147483647"

// savedVar carries the original GODEBUG across the re-execution: "=" followed by the
// value when it was set, "" when it was not.
const savedVar = "MCP_RUNTIME_ORIGINAL_GODEBUG"

// Apply gives the process the GODEBUG it should run with, re-executing the binary when
// that differs from the one it was given: Setting added when keep (unless GODEBUG already
// names schedtrace, the operator's choice: schedtrace=0 opts out), and http2debug removed
// whatever keep says — it makes net/http log request headers, bearer tokens included, and a
// runtime in a stdio pod shares its environment with the server it starts (spec.env). The
// re-executed process restores the original environment (Restore), so upstream processes
// inherit what the runtime was given. On success it does not return; it returns the error
// when the binary could not be re-executed, and the process goes on as it is.
func Apply(keep bool) error {
	if Restore() {
		return nil
	}
	godebug, set := os.LookupEnv("GODEBUG")
	want := own(godebug, keep)
	if want == godebug || runtime.GOOS == "windows" { // no exec in place there
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, reexecEnv(os.Environ(), godebug, set, want)) //nolint:gosec // this very binary, with its own arguments
}

// Ensure is Apply(true).
func Ensure() error { return Apply(true) }

// own is the GODEBUG the runtime itself runs with, given godebug (see Apply); godebug
// itself when there is nothing to change.
func own(godebug string, keep bool) string {
	var kept []string
	changed := false
	for field := range strings.SplitSeq(godebug, ",") {
		switch k, _, _ := strings.Cut(strings.TrimSpace(field), "="); {
		case k == "http2debug":
			changed = true
		case k != "":
			kept = append(kept, field)
		}
	}
	if keep && !names(godebug, "schedtrace") {
		kept, changed = append(kept, Setting), true
	}
	if !changed {
		return godebug
	}
	return strings.Join(kept, ",")
}

// Restore undoes, in the re-executed process, what Ensure added to the environment: GODEBUG
// as it was and no marker (the scheduler keeps the setting it read at start). It reports
// whether this process is such a re-execution.
func Restore() bool {
	saved, ok := os.LookupEnv(savedVar)
	if !ok {
		return false
	}
	_ = os.Unsetenv(savedVar)
	if value, set := strings.CutPrefix(saved, "="); set {
		_ = os.Setenv("GODEBUG", value)
	} else {
		_ = os.Unsetenv("GODEBUG")
	}
	return true
}

// reexecEnv is env with GODEBUG set to value and the original saved.
func reexecEnv(env []string, godebug string, set bool, value string) []string {
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GODEBUG=") && !strings.HasPrefix(kv, savedVar+"=") {
			out = append(out, kv)
		}
	}
	saved := ""
	if set {
		saved = "=" + godebug
	}
	return append(out, savedVar+"="+saved, "GODEBUG="+value)
}

// names reports whether the comma-separated GODEBUG value sets key.
func names(godebug, key string) bool {
	for field := range strings.SplitSeq(godebug, ",") {
		if k, _, ok := strings.Cut(strings.TrimSpace(field), "="); ok && k == key {
			return true
		}
	}
	return false
}
