package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/sysmon"
)

// Targets of issue #3 item 13.
const (
	goalCPUvsProxy    = 1.2                    // (c) CPU per request ≤ 1.2× the bare proxy's
	goalP50Added      = 300 * time.Microsecond // (c) p50 added at 1 connection
	goalStdioVsDirect = 0.9                    // (d) throughput ≥ 0.9× direct
	goalWSKiB         = 30.0                   // RSS per idle WebSocket at 10k
	goalFirstResponse = 20 * time.Millisecond  // a new session's first tools/call answered
)

func printCell(t *target, c cellResult) {
	if c.setupFail != "" {
		fmt.Printf("round %d  %-22s conc %3d  SETUP FAILED: %s\n", c.round, t.label, c.conc, c.setupFail)
		return
	}
	fmt.Printf("round %d  %-22s conc %3d  %8.0f req/s  p50 %s  p99 %s  hop CPU %s µs/req  errors %s\n",
		c.round, t.label, c.conc, c.rps, fmtMs(c.p50), fmtMs(c.p99), fmtF(c.hopCPU), errSummary(c.errorCount(), c.errs, c.firstErr))
}

func errSummary(n int, errs [numErrClasses]int, first string) string {
	if n == 0 {
		return "0"
	}
	var parts []string
	for c := errTransport; c < numErrClasses; c++ {
		if errs[c] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", errClassNames[c], errs[c]))
		}
	}
	s := fmt.Sprintf("%d (%s)", n, strings.Join(parts, ", "))
	if first != "" {
		s += fmt.Sprintf(" first: %.160s", first)
	}
	return s
}

// agg is the median over rounds of one (target, concurrency).
type agg struct {
	rounds              int
	rps                 float64
	p50, p99            time.Duration
	hopCPU, upCPU, load float64
	n, errors           int
	errs                [numErrClasses]int
	firstErr, setupFail string
}

func aggregate(cells []cellResult, key string, conc int) (agg, bool) {
	var a agg
	var rps, hop, up, load []float64
	var p50, p99 []time.Duration
	for _, c := range cells {
		if c.target != key || c.conc != conc {
			continue
		}
		a.rounds++
		if c.setupFail != "" {
			a.setupFail = c.setupFail
			continue
		}
		rps, hop, up, load = append(rps, c.rps), append(hop, c.hopCPU), append(up, c.upCPU), append(load, c.loadCPU)
		p50, p99 = append(p50, c.p50), append(p99, c.p99)
		a.n += c.n
		a.errors += c.errorCount()
		for i := range c.errs {
			a.errs[i] += c.errs[i]
		}
		if a.firstErr == "" {
			a.firstErr = c.firstErr
		}
	}
	if a.rounds == 0 {
		return a, false
	}
	a.rps, a.hopCPU, a.upCPU, a.load = medianF(rps), medianF(hop), medianF(up), medianF(load)
	a.p50, a.p99 = median(p50), median(p99)
	return a, true
}

// medianF is the median of the values that are not NaN (NaN when none are).
func medianF(v []float64) float64 {
	v = slices.DeleteFunc(slices.Clone(v), math.IsNaN)
	if len(v) == 0 {
		return nan
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	if len(d)%2 == 1 {
		return d[len(d)/2]
	}
	return (d[len(d)/2-1] + d[len(d)/2]) / 2
}

func fmtMs(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

func fmtF(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

// verdict is one line of the targets table.
type verdict struct {
	what, measured, goal, result string
}

func judge(ok, known bool, errors int) string {
	switch {
	case !known:
		return "n/a"
	case errors > 0 && ok:
		return "PASS (cells had errors)"
	case errors > 0:
		return "FAIL (cells had errors)"
	case ok:
		return "PASS"
	}
	return "FAIL"
}

// report renders the tables and the targets as Markdown.
func (b *bench) report(env, loadEnd string) string {
	w := &strings.Builder{}
	fmt.Fprintf(w, "## mcp-runtime benchmark\n\n```\n%sloadavg at end:   %s\n", env, loadEnd)
	fmt.Fprintf(w, "cells: %s measured after %s warmup, %d round(s), medians over rounds; tool %s\n",
		b.o.duration, b.o.warmup, b.o.rounds, benchTool)
	bare := "the bare hops with the same"
	if b.o.bareGoDefaults {
		bare = "the bare hops with Go's defaults (-bare-go-defaults), not"
	}
	if b.o.schedulerAwake {
		fmt.Fprintf(w, "runtimes with tuning.keepSchedulerAwake, %s GODEBUG=%s\n", bare, sysmon.Setting)
	} else {
		fmt.Fprintln(w, "runtimes and bare hops with Go's default scheduler settings (-keep-scheduler-awake=false)")
	}
	switch {
	case b.o.staticProcs:
		fmt.Fprintln(w, "runtimes with tuning.staticProcs, every hop with Go's default GOMAXPROCS (-static-procs)")
	default:
		fmt.Fprintf(w, "runtimes size GOMAXPROCS to the load (the default), %s controller\n", bare)
	}
	if b.o.hopProcs > 0 {
		fmt.Fprintf(w, "GOMAXPROCS=%d for the bare proxy (b) and the runtime → HTTP (c)\n", b.o.hopProcs)
	}
	fmt.Fprint(w, "```\n\n")

	fmt.Fprintln(w, "| target | conc | req/s | p50 | p99 | hop CPU µs/req | server CPU µs/req | loadgen CPU µs/req | requests | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	aggs := map[string]map[int]agg{}
	for _, k := range b.o.targets {
		aggs[k] = map[int]agg{}
		for _, conc := range b.o.conc {
			a, ok := aggregate(b.cells, k, conc)
			if !ok {
				continue
			}
			aggs[k][conc] = a
			if a.setupFail != "" && a.n == 0 {
				fmt.Fprintf(w, "| %s | %d | setup failed: %s | | | | | | | |\n", targetLabels[k], conc, a.setupFail)
				continue
			}
			fmt.Fprintf(w, "| %s | %d | %.0f | %s | %s | %s | %s | %s | %d | %s |\n", targetLabels[k], conc, a.rps,
				fmtMs(a.p50), fmtMs(a.p99), fmtF(a.hopCPU), fmtF(a.upCPU), fmtF(a.load), a.n, errSummary(a.errors, a.errs, a.firstErr))
		}
	}

	get := func(k string, conc int) (agg, bool) {
		a, ok := aggs[k][conc]
		return a, ok && a.n > 0
	}
	fmt.Fprintln(w, "\n| conc | b/a req/s | c/a req/s | d/a req/s | e/a req/s | c/b CPU per req | d/e CPU per req | p50 b−a | p50 c−b | p50 c−a | p50 d−a | p50 d−e |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, conc := range b.o.conc {
		a, aok := get("a", conc)
		bb, bok := get("b", conc)
		c, cok := get("c", conc)
		d, dok := get("d", conc)
		e, eok := get("e", conc)
		ratio := func(x, y float64, ok bool) string {
			if !ok || y == 0 || math.IsNaN(x) || math.IsNaN(y) {
				return "–"
			}
			return fmt.Sprintf("%.2f×", x/y)
		}
		diff := func(x, y agg, ok bool) string {
			if !ok {
				return "–"
			}
			return fmt.Sprintf("%+.3f ms", float64(x.p50-y.p50)/1e6)
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", conc,
			ratio(bb.rps, a.rps, aok && bok), ratio(c.rps, a.rps, aok && cok), ratio(d.rps, a.rps, aok && dok), ratio(e.rps, a.rps, aok && eok),
			ratio(c.hopCPU, bb.hopCPU, bok && cok), ratio(d.hopCPU, e.hopCPU, dok && eok),
			diff(bb, a, aok && bok), diff(c, bb, bok && cok), diff(c, a, aok && cok), diff(d, a, aok && dok), diff(d, e, dok && eok))
	}

	var vs []verdict
	for _, conc := range b.o.conc {
		bb, bok := get("b", conc)
		c, cok := get("c", conc)
		ok := bok && cok && !math.IsNaN(c.hopCPU) && !math.IsNaN(bb.hopCPU) && bb.hopCPU > 0
		v := verdict{what: fmt.Sprintf("(c) CPU/request vs bare proxy, %d conn", conc), goal: fmt.Sprintf("≤ %.1f×", goalCPUvsProxy), measured: "–"}
		if ok {
			r := c.hopCPU / bb.hopCPU
			v.measured = fmt.Sprintf("%.2f× (%.0f vs %.0f µs)", r, c.hopCPU, bb.hopCPU)
			v.result = judge(r <= goalCPUvsProxy, true, c.errors+bb.errors)
		} else {
			v.result = judge(false, false, 0)
		}
		vs = append(vs, v)
	}
	{
		bb, bok := get("b", 1)
		c, cok := get("c", 1)
		a, aok := get("a", 1)
		v := verdict{what: "(c) p50 added over the bare proxy, 1 conn", goal: fmt.Sprintf("≤ %.1f ms", goalP50Added.Seconds()*1e3), measured: "–", result: "n/a"}
		if bok && cok {
			added := c.p50 - bb.p50
			v.measured = fmt.Sprintf("%+.3f ms", float64(added)/1e6)
			if aok {
				v.measured += fmt.Sprintf(" (over direct %+.3f ms)", float64(c.p50-a.p50)/1e6)
			}
			v.result = judge(added <= goalP50Added, true, c.errors+bb.errors)
		}
		vs = append(vs, v)
	}
	for _, conc := range b.o.conc {
		a, aok := get("a", conc)
		d, dok := get("d", conc)
		v := verdict{what: fmt.Sprintf("(d) throughput vs direct, %d conn", conc), goal: fmt.Sprintf("≥ %.1f×", goalStdioVsDirect), measured: "–", result: "n/a"}
		if aok && dok && a.rps > 0 {
			r := d.rps / a.rps
			v.measured = fmt.Sprintf("%.2f× (%.0f vs %.0f req/s)", r, d.rps, a.rps)
			v.result = judge(r >= goalStdioVsDirect, true, a.errors+d.errors)
		}
		vs = append(vs, v)
	}
	for _, conc := range b.o.conc { // not a target: how close any stdio relay gets, for (d)
		a, aok := get("a", conc)
		e, eok := get("e", conc)
		if aok && eok && a.rps > 0 {
			vs = append(vs, verdict{what: fmt.Sprintf("(e) bare stdio relay throughput vs direct, %d conn", conc), goal: "floor of (d)",
				measured: fmt.Sprintf("%.2f× (%.0f vs %.0f req/s)", e.rps/a.rps, e.rps, a.rps), result: "info"})
		}
		f, fok := get("f", conc)
		if aok && fok && a.rps > 0 {
			vs = append(vs, verdict{what: fmt.Sprintf("(f) runtime → stdio, checks off, throughput vs direct, %d conn", conc), goal: "what (d)'s checks cost",
				measured: fmt.Sprintf("%.2f× (%.0f vs %.0f req/s, %s µs CPU/req)", f.rps/a.rps, f.rps, a.rps, fmtF(f.hopCPU)), result: "info"})
		}
		g, gok := get("g", conc)
		if aok && gok && a.rps > 0 {
			vs = append(vs, verdict{what: fmt.Sprintf("(g) bare stdio relay over TLS, throughput vs direct, %d conn", conc), goal: "floor of (d) with TLS",
				measured: fmt.Sprintf("%.2f× (%.0f vs %.0f req/s, %s µs CPU/req)", g.rps/a.rps, g.rps, a.rps, fmtF(g.hopCPU)), result: "info"})
		}
		c, cok := get("c", conc)
		h, hok := get("h", conc)
		if cok && hok && h.hopCPU > 0 {
			vs = append(vs, verdict{what: fmt.Sprintf("(c) CPU/request vs bare proxy over TLS (h), %d conn", conc), goal: "floor of (c) with TLS",
				measured: fmt.Sprintf("%.2f× (%s vs %s µs)", c.hopCPU/h.hopCPU, fmtF(c.hopCPU), fmtF(h.hopCPU)), result: "info"})
		}
	}
	{
		v := verdict{what: "RSS per idle WebSocket (runtime → stdio)", goal: fmt.Sprintf("≤ %.0f KiB at 10k", goalWSKiB), measured: "–", result: "n/a"}
		if b.ws != nil && b.ws.open > 0 {
			v.what = fmt.Sprintf("RSS per idle WebSocket, %d held", b.ws.open)
			v.measured = fmt.Sprintf("%.1f KiB", b.ws.perConnKiB)
			r := judge(b.ws.perConnKiB <= goalWSKiB, true, int(b.ws.dropped)+b.ws.want-b.ws.open)
			if b.ws.want < 10000 {
				r += fmt.Sprintf(" (at %d, not 10k)", b.ws.want)
			}
			v.result = r
		} else if b.wsErr != "" {
			v.measured = "could not run: " + b.wsErr
		}
		vs = append(vs, v)
	}
	for _, k := range []string{"c", "d"} {
		f, ok := b.first[k]
		v := verdict{what: fmt.Sprintf("%s first response of a new session (median)", targetLabels[k]), goal: fmt.Sprintf("≤ %d ms", goalFirstResponse.Milliseconds()), measured: "–", result: "n/a"}
		if ok && len(f.samples) > 0 {
			m := median(f.samples)
			v.measured = fmt.Sprintf("%s (p90 %s, n=%d)", fmtMs(m), fmtMs(percentile(slices.Clone(f.samples), 0.9)), len(f.samples))
			v.result = judge(m <= goalFirstResponse, true, f.failures)
		}
		vs = append(vs, v)
	}
	fmt.Fprintln(w, "\n| target | measured | goal | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, v := range vs {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", v.what, v.measured, v.goal, v.result)
	}
	if f, ok := b.first["a"]; ok && len(f.samples) > 0 {
		fmt.Fprintf(w, "\nFirst response for reference: direct %s", fmtMs(median(f.samples)))
		if fb, ok := b.first["b"]; ok && len(fb.samples) > 0 {
			fmt.Fprintf(w, ", bare proxy %s", fmtMs(median(fb.samples)))
		}
		fmt.Fprintln(w, " (plain HTTP, no TLS handshake).")
	}
	if b.ws != nil {
		fmt.Fprintf(w, "Idle WebSockets: %d/%d open after %s of dialing, %d dropped while held, runtime RSS %d → %d KiB.\n",
			b.ws.open, b.ws.want, b.ws.dialTime.Round(time.Millisecond), b.ws.dropped, b.ws.rssBefore, b.ws.rssAfter)
	}
	return w.String()
}
