// Package procs sizes GOMAXPROCS to the runtime's load: one P while one is enough, more
// (up to Go's own default) while the process keeps the ones it has busy.
//
// A relay spends most of a request waiting on sockets and pipes. With more than one P,
// every goroutine made runnable while a P is idle wakes another thread to look for work
// (runtime.wakep), which spins, finds none or steals the goroutine from the P that was
// about to run it, and parks again. On a 2-vCPU machine shared with the upstream, that
// was a quarter of the runtime's CPU per request, and running on one P raised throughput
// by 5% at one connection and 12–24% at 16 and 64 (docs/benchmarks.md). One P caps the
// runtime at about one core of Go code, so the Controller doubles GOMAXPROCS when the
// process used most of its Ps over a period, and halves it again after a calm spell.
package procs

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"time"
)

// Tuning of the Controller.
const (
	// Period between two decisions.
	Period = time.Second
	// RaiseAt: GOMAXPROCS doubles when the process used at least this share of its Ps.
	RaiseAt = 0.75
	// LowerAt: GOMAXPROCS halves when the process would have used at most this share of
	// half its Ps, for CalmPeriods periods in a row.
	LowerAt = 0.5
	// CalmPeriods is how long the load must stay low before GOMAXPROCS is halved.
	CalmPeriods = 10
	// IdlePeriod replaces Period while the process is idle on one P (under IdleBelow
	// CPUs): every wake-up of an idle Go process costs CPU (4–7 ms on a 2-vCPU VM, the
	// scheduler's monitor thread polling every 20 µs for a while after it; ~1 ms of CPU
	// per second at one check a second), which a fleet of idle servers would pay for
	// nothing. A load that starts is noticed within IdlePeriod; one P serves it meanwhile.
	IdlePeriod = 30 * time.Second
	IdleBelow  = 0.05
)

// Wait is how long the Controller sleeps before its next decision, given the setting it
// just made and the CPUs used over the last period.
func Wait(cur int, used float64) time.Duration {
	if cur == 1 && used < IdleBelow {
		return IdlePeriod
	}
	return Period
}

// Decide returns the GOMAXPROCS for the next period and the updated count of calm
// periods, given the current setting, the ceiling (Go's default), the CPU the process
// used per second of the last period, and the calm periods before it.
func Decide(cur, ceiling int, used float64, calm int) (next, calmAfter int) {
	switch {
	case cur < ceiling && used >= RaiseAt*float64(cur):
		return min(2*cur, ceiling), 0
	case cur > 1 && used <= LowerAt*float64(cur/2):
		if calm+1 >= CalmPeriods {
			return cur / 2, 0
		}
		return cur, calm + 1
	}
	return cur, 0
}

// Enabled reports whether the Controller may run: not when GOMAXPROCS is set in the
// environment (the operator's choice) or Go's default is a single P anyway.
func Enabled() bool {
	_, set := os.LookupEnv("GOMAXPROCS")
	return !set && runtime.GOMAXPROCS(0) > 1
}

// Start runs a Controller until ctx ends, unless static (tuning.staticProcs: Go's default
// all the time) or Enabled says no: what a process does with the setting at start.
func Start(ctx context.Context, log *slog.Logger, static bool) {
	if static || !Enabled() {
		return
	}
	go New(log).Run(ctx)
}

// Controller applies Decide every Period.
type Controller struct {
	log        *slog.Logger
	period     time.Duration // Period; IdlePeriod is idlePeriod (shorter in tests)
	idlePeriod time.Duration
	// cpu returns the process's CPU time so far (user + system); rt drives GOMAXPROCS.
	// Both are swapped in tests.
	cpu func() (time.Duration, error)
	rt  goRuntime

	ceiling   int  // Go's default when last read
	cur       int  // GOMAXPROCS now
	atDefault bool // cur is Go's default, which follows the CPU limit by itself
	calm      int  // calm periods in a row (see Decide)
	periods   int  // periods since the ceiling was last read
}

// CeilingPeriods: below the ceiling, Go's default is read again this often, so that a CPU
// limit lowered in place (a pod resized) lowers GOMAXPROCS too.
const CeilingPeriods = 30

// goRuntime is what the Controller does with package runtime.
type goRuntime interface {
	get() int    // GOMAXPROCS now
	set(n int)   // GOMAXPROCS = n (Go stops following the CPU limit)
	useDefault() // back to Go's default, which follows the CPU limit again
}

type realRuntime struct{}

func (realRuntime) get() int    { return runtime.GOMAXPROCS(0) }
func (realRuntime) set(n int)   { runtime.GOMAXPROCS(n) }
func (realRuntime) useDefault() { runtime.SetDefaultGOMAXPROCS() }

// New returns a Controller whose ceiling is the current GOMAXPROCS (Go's default, which
// follows the container's CPU limit). Call it before anything else sets GOMAXPROCS.
func New(log *slog.Logger) *Controller {
	return &Controller{log: log, period: Period, idlePeriod: IdlePeriod, cpu: processCPU, rt: realRuntime{}}
}

// Run starts at one P and adjusts GOMAXPROCS until ctx ends, then gives back Go's default.
func (c *Controller) Run(ctx context.Context) {
	last, err := c.cpu()
	if err != nil {
		c.log.Warn("Cannot read the process's CPU time; GOMAXPROCS stays at Go's default", "error", err)
		return
	}
	c.ceiling, c.cur, c.atDefault = c.rt.get(), c.rt.get(), true
	c.apply(1)
	defer c.rt.useDefault()
	t := time.NewTimer(c.period)
	defer t.Stop()
	lastAt := time.Now()
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			wait := c.period
			if total, err := c.cpu(); err == nil {
				used := (total - last).Seconds() / now.Sub(lastAt).Seconds()
				last, lastAt = total, now
				// The first period's start-up work (configuration, keys, the upstream) is not load.
				if !first {
					c.step(used)
					if Wait(c.cur, used) == IdlePeriod {
						wait = c.idlePeriod
					}
				}
				first = false
			}
			t.Reset(wait)
		}
	}
}

// step makes one decision for a period in which the process used `used` CPUs.
func (c *Controller) step(used float64) {
	c.periods++
	fresh := c.atDefault || c.periods >= CeilingPeriods
	if fresh {
		c.readCeiling()
	}
	next, calm := Decide(c.cur, c.ceiling, used, c.calm)
	if next > c.cur && !fresh { // about to add Ps: the limit may have been lowered meanwhile
		c.readCeiling()
		next, calm = Decide(c.cur, c.ceiling, used, c.calm)
	}
	c.calm = calm
	if next == c.cur {
		return
	}
	c.log.Info("Resizing GOMAXPROCS to the load", "from", c.cur, "to", next, "cpusUsed", used)
	c.apply(next)
}

// readCeiling takes Go's default again. At the default, GOMAXPROCS is it; below, the only
// way to learn it is to go back to it for a moment (two brief stops of the world).
func (c *Controller) readCeiling() {
	c.periods = 0
	if c.atDefault {
		c.ceiling = c.rt.get()
		c.cur = c.ceiling
		return
	}
	c.rt.useDefault()
	c.ceiling = c.rt.get()
	if c.cur >= c.ceiling {
		c.cur, c.atDefault = c.ceiling, true
		return
	}
	c.rt.set(c.cur)
}

// apply sets GOMAXPROCS to n; at the ceiling it hands it back to Go's default.
func (c *Controller) apply(n int) {
	if n >= c.ceiling {
		c.rt.useDefault()
		c.ceiling = c.rt.get()
		c.cur, c.atDefault = c.ceiling, true
		return
	}
	c.rt.set(n)
	c.cur, c.atDefault = n, false
}
