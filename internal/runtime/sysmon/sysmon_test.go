package sysmon

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const helperVar = "SYSMON_TEST_HELPER"

// TestMain doubles as the process under test: with helperVar set it calls Ensure (which
// re-executes this test binary) and reports what the process and a child of it see.
func TestMain(m *testing.M) {
	if os.Getenv(helperVar) == "1" {
		os.Exit(helper())
	}
	os.Exit(m.Run())
}

type report struct {
	PID      int      // this process
	ExecEnv  []string // the environment it was executed with (what the Go runtime parsed)
	ChildEnv []string // what a child process inherits
	Err      string
}

func helper() int {
	r := report{PID: os.Getpid()}
	if err := Apply(os.Getenv("SYSMON_TEST_KEEP") != "0"); err != nil {
		r.Err = err.Error()
	}
	raw, err := os.ReadFile("/proc/self/environ")
	if err != nil {
		r.Err = err.Error()
	}
	for kv := range bytes.SplitSeq(bytes.TrimRight(raw, "\x00"), []byte{0}) {
		r.ExecEnv = append(r.ExecEnv, string(kv))
	}
	out, err := exec.Command("env").Output()
	if err != nil {
		r.Err = err.Error()
	}
	r.ChildEnv = strings.Split(strings.TrimSpace(string(out)), "\n")
	_ = json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

func TestEnsureReexecutesWithTheSettingAndChildrenSeeTheOriginalEnvironment(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/environ")
	}
	unset := "<unset>"
	for _, tc := range []struct {
		name, godebug string
		wantExec      string // GODEBUG the process runs with
		reexec        bool
		off           bool // Apply(false)
	}{
		{name: "no GODEBUG", godebug: unset, wantExec: Setting, reexec: true},
		{name: "empty GODEBUG", godebug: "", wantExec: Setting, reexec: true},
		{name: "other settings kept", godebug: "http2client=0,panicnil=1", wantExec: "http2client=0,panicnil=1," + Setting, reexec: true},
		{name: "schedtrace chosen by the operator", godebug: "schedtrace=0", wantExec: "schedtrace=0", reexec: false},
		// http2debug makes net/http log request headers (bearer tokens): never in the runtime.
		{name: "http2debug dropped", godebug: "http2debug=2,panicnil=1", wantExec: "panicnil=1," + Setting, reexec: true},
		{name: "http2debug dropped without keep", godebug: "http2debug=1", wantExec: "", reexec: true, off: true},
		{name: "nothing to change without keep", godebug: "panicnil=1", wantExec: "panicnil=1", reexec: false, off: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(withoutVar(withoutVar(os.Environ(), "GODEBUG"), savedVar), helperVar+"=1", "MARK=kept")
			if tc.off {
				cmd.Env = append(cmd.Env, "SYSMON_TEST_KEEP=0")
			}
			if tc.godebug != unset {
				cmd.Env = append(cmd.Env, "GODEBUG="+tc.godebug)
			}
			var stdout bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
			if err := cmd.Run(); err != nil {
				t.Fatal(err)
			}
			var r report
			if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
				t.Fatalf("helper output %q: %v", stdout.String(), err)
			}
			if r.Err != "" {
				t.Fatal(r.Err)
			}
			if r.PID != cmd.Process.Pid {
				t.Errorf("pid %d, want the started process's %d (re-executed in place)", r.PID, cmd.Process.Pid)
			}
			if got, _ := lookup(r.ExecEnv, "GODEBUG"); got != tc.wantExec {
				t.Errorf("executed with GODEBUG=%q, want %q", got, tc.wantExec)
			}
			if _, marked := lookup(r.ExecEnv, savedVar); marked != tc.reexec {
				t.Errorf("re-executed: %v, want %v", marked, tc.reexec)
			}
			got, set := lookup(r.ChildEnv, "GODEBUG")
			if want := tc.godebug; (tc.godebug == unset) == set || set && got != want {
				t.Errorf("child sees GODEBUG=%q (set %v), want the original %q", got, set, tc.godebug)
			}
			if _, leaked := lookup(r.ChildEnv, savedVar); leaked {
				t.Errorf("child sees %s", savedVar)
			}
			if v, _ := lookup(r.ChildEnv, "MARK"); v != "kept" {
				t.Errorf("child lost the rest of the environment: MARK=%q", v)
			}
		})
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		godebug string
		want    bool
	}{
		{"", false},
		{"schedtrace=1", true},
		{"http2client=0, schedtrace=0", true},
		{"scheddetail=1", false},
		{"xschedtrace=1", false},
		{"schedtrace", false},
	} {
		if got := names(tc.godebug, "schedtrace"); got != tc.want {
			t.Errorf("names(%q) = %v, want %v", tc.godebug, got, tc.want)
		}
	}
}

func TestReexecEnvReplacesStaleValues(t *testing.T) {
	env := reexecEnv([]string{"A=1", "GODEBUG=x=1", savedVar + "=stale", "B=2"}, "x=1", true, "x=1,"+Setting)
	want := []string{"A=1", "B=2", savedVar + "==x=1", "GODEBUG=x=1," + Setting}
	if !slices.Equal(env, want) {
		t.Errorf("got %q, want %q", env, want)
	}
}

func lookup(env []string, key string) (string, bool) {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

func withoutVar(env []string, key string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
}
