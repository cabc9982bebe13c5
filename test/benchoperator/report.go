package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Targets from GitHub issue #2 item 8, stated for N=1000 on 2 cores.
const (
	targetConverge       = 60 * time.Second
	targetWritesPerSrv   = 10.0
	targetQuietWrites    = 0
	targetPeakRSSBytes   = 120 << 20
	peerName             = "ToolHive operator v0.47.0, 1 worker, kind"
	mib                  = 1 << 20
	notMeasuredByThePeer = "—"
)

// peerTime is the peer's time to reconcile every server fully, where it was measured.
func peerTime(n int) string {
	switch n {
	case 100:
		return "10.6 s"
	case 1000:
		return "121 s"
	}
	return "10.6 s @100, 121 s @1000"
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func printResult(out io.Writer, o options, r result) {
	n := float64(o.n)
	perServer := float64(r.converge.Total()) / n
	noop := int64(r.converge.Status) - r.statusChanged
	if noop < 0 {
		noop = 0
	}
	say(out, "\n  %s, N=%d — targets are for N=1000 on 2 cores; peer: %s\n", r.scenario.id, o.n, peerName)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(metric, got, target, peer, v string) {
		say(tw, "  %s\t%s\t%s\t%s\t%s\n", metric, got, target, peer, v)
	}
	row("metric", "result", "target", "peer", "")
	row(fmt.Sprintf("time until every server has all %d children", r.children), secs(r.toChildren), "", "", "")
	settledMetric := "time until every status is settled (" + r.scenario.settledDesc + ")"
	if r.scenario.id == "well" {
		row(settledMetric, secs(r.toSettled), "≤ "+secs(targetConverge), peerTime(o.n), verdict(r.toSettled <= targetConverge))
	} else {
		row(settledMetric, secs(r.toSettled), "", "", "")
	}
	row("time until the manager's last write (convergence)", secs(r.toLastWrite), "", "", "")
	row("manager API writes to converge, per server (audit)", fmt.Sprintf("%.2f", perServer), fmt.Sprintf("≤ %.0f", targetWritesPerSrv), "~25", verdict(perServer <= targetWritesPerSrv))
	row("  children / status / events / other, per server", fmt.Sprintf("%.2f / %.2f / %.2f / %.2f", float64(r.converge.Children)/n, float64(r.converge.Status)/n, float64(r.converge.Events)/n, float64(r.converge.Other)/n), "", "", "")
	row("  status writes that changed nothing, per server", fmt.Sprintf("%.2f", float64(noop)/n), "0", "17", verdict(noop == 0))
	row("  refused writes (conflicts, errors), total", fmt.Sprint(r.converge.Failed), "", "", "")
	row("  same, from the manager's rest_client_requests_total", fmt.Sprintf("%.2f", r.convergeProm/n), "", "", "")
	row("  reconciles, per server", fmt.Sprintf("%.2f", r.reconciles/n), "", "", "")
	quietPeer := notMeasuredByThePeer
	if r.scenario.id == "podsdown" {
		quietPeer = "12,033 @1000"
	}
	row(fmt.Sprintf("manager writes in the %s quiet window (audit)", o.quiet), fmt.Sprint(r.quiet.Total()), "0", quietPeer, verdict(r.quiet.Total() == targetQuietWrites))
	row("  same, from rest_client_requests_total", fmt.Sprintf("%.0f", r.quietProm), "", "", "")
	row("  reconciles in the quiet window", fmt.Sprintf("%.0f", r.quietReconcile), "", "", "")
	row("  manager CPU in the quiet window", secs(r.quietCPU), "", "", "")
	row("manager peak RSS (VmHWM)", fmt.Sprintf("%.1f MiB", float64(r.proc.PeakRSSBytes)/mib), fmt.Sprintf("≤ %d MiB", targetPeakRSSBytes/mib), "132–144 MiB @1000", verdict(r.proc.PeakRSSBytes <= targetPeakRSSBytes))
	row("manager CPU seconds (utime+stime), whole run", secs(r.proc.CPU), "", "", "")
	_ = tw.Flush()
	say(out, "  statuses after the quiet window: %s\n", r.quietStatus)
	say(out, "  harness stand-in status writes (not the manager's): %d; creating the servers took %s; load average %s\n",
		r.standInWrites, secs(r.created), r.loadAvg)
}

func printSummary(out io.Writer, o options, results []result) {
	say(out, "\nsummary, N=%d (targets for N=1000, 2 cores):\n", o.n)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	say(tw, "  scenario\tchildren\tsettled\twrites/server\tquiet writes\tpeak RSS\tCPU\n")
	for _, r := range results {
		say(tw, "  %s\t%s\t%s\t%.2f\t%d\t%.1f MiB\t%s\n", r.scenario.id, secs(r.toChildren), secs(r.toSettled),
			float64(r.converge.Total())/float64(o.n), r.quiet.Total(), float64(r.proc.PeakRSSBytes)/mib, secs(r.proc.CPU))
	}
	_ = tw.Flush()
	say(out, "%s\n", "\nCert-manager and the Deployment controller do not run against a bare apiserver: where a scenario")
	say(out, "%s\n", "needs them, the harness plays them from its own client (Certificate Ready + NotAfter, Deployment")
	say(out, "%s\n", "replicas available), as controllers/mcpserver_controller_test.go does. Their writes are not counted.")
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// say writes to the report; a failed write to stdout has nowhere better to be reported.
func say(w io.Writer, format string, a ...any) { _, _ = fmt.Fprintf(w, format, a...) }
