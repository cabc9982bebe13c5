package procs

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	cases := []struct {
		name              string
		cur, ceiling      int
		used              float64
		calm              int
		wantNext, wantCal int
	}{
		{"busy one P doubles", 1, 8, 0.8, 0, 2, 0},
		{"busy doubles up to the ceiling only", 4, 6, 3.5, 0, 6, 0},
		{"busy at the ceiling stays", 2, 2, 2.0, 0, 2, 0},
		{"half busy one P stays", 1, 8, 0.6, 0, 1, 0},
		{"idle one P stays and counts nothing", 1, 8, 0.0, 0, 1, 0},
		{"calm period is counted", 2, 2, 0.3, 3, 2, 4},
		{"last calm period halves", 2, 2, 0.3, CalmPeriods - 1, 1, 0},
		{"calm at four halves to two", 4, 8, 0.9, CalmPeriods - 1, 2, 0},
		{"between the thresholds resets the count", 2, 2, 0.6, 5, 2, 0},
		{"a busy period resets the count and doubles", 2, 8, 1.6, 9, 4, 0},
	}
	for _, c := range cases {
		next, calm := Decide(c.cur, c.ceiling, c.used, c.calm)
		if next != c.wantNext || calm != c.wantCal {
			t.Errorf("%s: Decide(%d, %d, %.2f, %d) = %d, %d; want %d, %d",
				c.name, c.cur, c.ceiling, c.used, c.calm, next, calm, c.wantNext, c.wantCal)
		}
	}
}

// fakeCPU reports CPU time that grows by load × wall time: the load the test sets.
type fakeCPU struct {
	mu    sync.Mutex
	total time.Duration
	at    time.Time
	load  float64
}

func (f *fakeCPU) read() (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if !f.at.IsZero() {
		f.total += time.Duration(f.load * float64(now.Sub(f.at)))
	}
	f.at = now
	return f.total, nil
}

func (f *fakeCPU) set(load float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.load = load
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s (GOMAXPROCS %d)", what, runtime.GOMAXPROCS(0))
}

func TestRunStartsAtOneGrowsUnderLoadShrinksWhenCalmAndRestoresTheDefault(t *testing.T) {
	ceiling := runtime.GOMAXPROCS(0)
	if !Enabled() {
		t.Skip("GOMAXPROCS is set in the environment or Go's default is one P: nothing to resize")
	}
	defer runtime.SetDefaultGOMAXPROCS()
	cpu := &fakeCPU{}
	c := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.period, c.idlePeriod, c.cpu = 10*time.Millisecond, 50*time.Millisecond, cpu.read
	ctx, cancel := context.WithCancel(context.Background())
	var done atomic.Bool
	go func() { c.Run(ctx); done.Store(true) }()

	waitFor(t, "one P at start", func() bool { return runtime.GOMAXPROCS(0) == 1 })
	cpu.set(float64(ceiling)) // every P busy: doubles each period up to the ceiling
	waitFor(t, "the ceiling under load", func() bool { return runtime.GOMAXPROCS(0) == ceiling })
	cpu.set(0) // idle: halves after each calm spell, down to one
	waitFor(t, "one P when calm", func() bool { return runtime.GOMAXPROCS(0) == 1 })
	cancel()
	waitFor(t, "Run to return", done.Load)
	if got := runtime.GOMAXPROCS(0); got != ceiling {
		t.Errorf("GOMAXPROCS after Run = %d, want Go's default %d", got, ceiling)
	}
}

func TestWait(t *testing.T) {
	for _, c := range []struct {
		cur  int
		used float64
		want time.Duration
	}{
		{1, 0, IdlePeriod},
		{1, IdleBelow / 2, IdlePeriod},
		{1, IdleBelow, Period},
		{1, 0.5, Period},
		{2, 0, Period}, // above one P the calm spell is counted every Period
	} {
		if got := Wait(c.cur, c.used); got != c.want {
			t.Errorf("Wait(%d, %.3f) = %v, want %v", c.cur, c.used, got, c.want)
		}
	}
}

// An idle process on one P is not woken every Period: the CPU clock is read at the start,
// after the start-up period and once per IdlePeriod.
func TestAnIdleControllerSleepsLonger(t *testing.T) {
	if !Enabled() {
		t.Skip("GOMAXPROCS is set in the environment or Go's default is one P: nothing to resize")
	}
	defer runtime.SetDefaultGOMAXPROCS()
	var reads atomic.Int32
	cpu := &fakeCPU{}
	c := New(slog.New(slog.DiscardHandler))
	c.period, c.idlePeriod = 5*time.Millisecond, time.Hour
	c.cpu = func() (time.Duration, error) { reads.Add(1); return cpu.read() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	time.Sleep(300 * time.Millisecond) // 60 periods
	cancel()
	<-done
	if n := reads.Load(); n != 3 {
		t.Errorf("the CPU clock was read %d times in 60 idle periods, want 3 (start, start-up period, first decision)", n)
	}
}

func TestEnabledRespectsTheEnvironment(t *testing.T) {
	t.Setenv("GOMAXPROCS", "3")
	if Enabled() {
		t.Error("Enabled() with GOMAXPROCS set in the environment = true, want false")
	}
}

func TestProcessCPUCountsWorkDone(t *testing.T) {
	before, err := processCPU()
	if err != nil {
		t.Skip("no getrusage here:", err)
	}
	spin := 100 * time.Millisecond
	x := 0
	for end := time.Now().Add(spin); time.Now().Before(end); {
		x++
	}
	after, err := processCPU()
	if err != nil {
		t.Fatal(err)
	}
	// The loop ran on the CPU for most of its wall time (less on a loaded machine).
	if d := after - before; d < spin/10 {
		t.Errorf("processCPU grew by %v over a %v busy loop (%d iterations), want most of it", d, spin, x)
	}
}

// fakeRuntime stands for package runtime: Go's default (the CPU limit) is what the test says.
type fakeRuntime struct {
	goDefault int
	procs     int
	following bool // at the default, following the limit as Go does
	sets      int  // explicit GOMAXPROCS(n) calls
}

func (f *fakeRuntime) get() int {
	if f.following {
		f.procs = f.goDefault
	}
	return f.procs
}
func (f *fakeRuntime) set(n int)   { f.procs, f.following = n, false; f.sets++ }
func (f *fakeRuntime) useDefault() { f.procs, f.following = f.goDefault, true }

// A CPU limit changed in place (a pod resized) moves the ceiling: the Controller never adds
// Ps above a lowered limit, notices one lowered below its setting, and follows Go's default
// while at it.
func TestTheCeilingFollowsACPULimitChangedInPlace(t *testing.T) {
	rt := &fakeRuntime{goDefault: 8, procs: 8, following: true}
	c := &Controller{log: slog.New(slog.DiscardHandler), rt: rt}
	c.ceiling, c.cur, c.atDefault = rt.get(), rt.get(), true
	c.apply(1)
	if rt.procs != 1 {
		t.Fatalf("start: GOMAXPROCS %d, want 1", rt.procs)
	}

	rt.goDefault = 2 // the limit drops to 2 CPUs while the runtime is on one P
	c.step(0.9)      // busy: would double to 2, and 2 is now the whole default
	if rt.procs != 2 || !rt.following {
		t.Fatalf("after a busy period under a 2-CPU limit: GOMAXPROCS %d (following the default: %v), want 2, following", rt.procs, rt.following)
	}
	c.step(1.9) // busy at the ceiling: stays
	if rt.procs != 2 {
		t.Fatalf("busy at the ceiling: GOMAXPROCS %d, want 2", rt.procs)
	}

	rt.goDefault = 16 // the limit rises: Go's default follows, and so does the Controller
	c.step(2.0)
	if c.ceiling != 16 || rt.procs != 16 {
		t.Fatalf("after the limit rose: ceiling %d, GOMAXPROCS %d, want 16 and 16", c.ceiling, rt.procs)
	}
	for range CalmPeriods { // calm: halves to 8
		c.step(0)
	}
	if rt.procs != 8 || rt.following {
		t.Fatalf("after a calm spell: GOMAXPROCS %d (following: %v), want 8, not following", rt.procs, rt.following)
	}

	rt.goDefault = 4 // lowered below the setting while the Controller holds 8
	for range CeilingPeriods {
		c.step(5.0) // busy, so no halving: only the periodic read can bring it down
	}
	if rt.procs != 4 || !rt.following {
		t.Fatalf("%d periods after the limit fell below the setting: GOMAXPROCS %d (following: %v), want 4, following", CeilingPeriods, rt.procs, rt.following)
	}
}
