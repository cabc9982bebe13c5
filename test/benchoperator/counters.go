package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// writeCounts breaks the manager's writes down the way the issue asks: applies to
// children, status writes, events, and anything else.
type writeCounts struct {
	Children int // creates, applies, updates, deletes of child objects
	Status   int // MCPServer status subresource
	Events   int // events (core and events.k8s.io)
	Other    int
	Failed   int // responses >= 400 (conflicts, rejections); included in the above
}

func (w writeCounts) Total() int { return w.Children + w.Status + w.Events + w.Other }

func (w writeCounts) sub(o writeCounts) writeCounts {
	return writeCounts{w.Children - o.Children, w.Status - o.Status, w.Events - o.Events, w.Other - o.Other, w.Failed - o.Failed}
}

func (w writeCounts) String() string {
	s := fmt.Sprintf("%d (children %d, status %d, events %d", w.Total(), w.Children, w.Status, w.Events)
	if w.Other > 0 {
		s += fmt.Sprintf(", other %d", w.Other)
	}
	if w.Failed > 0 {
		s += fmt.Sprintf("; %d refused", w.Failed)
	}
	return s + ")"
}

// auditEvent is the part of an audit.k8s.io/v1 Event the bench reads.
type auditEvent struct {
	Stage          string    `json:"stage"`
	Verb           string    `json:"verb"`
	StageTimestamp time.Time `json:"stageTimestamp"`
	User           struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

var writeVerbs = map[string]bool{"create": true, "update": true, "patch": true, "delete": true, "deletecollection": true}

// classify adds one audit line to the counts; lines that are not a completed write by
// the manager are ignored. It returns the write's completion time (zero when ignored).
func (w *writeCounts) classify(line []byte) (time.Time, error) {
	var ev auditEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		return time.Time{}, fmt.Errorf("decoding audit event: %w", err)
	}
	if ev.Stage != "ResponseComplete" || ev.User.Username != managerUser || !writeVerbs[ev.Verb] {
		return time.Time{}, nil
	}
	switch {
	case ev.ObjectRef == nil:
		w.Other++
	case ev.ObjectRef.Resource == "events":
		w.Events++
	case ev.ObjectRef.Resource == "mcpservers" && ev.ObjectRef.Subresource == "status":
		w.Status++
	case ev.ObjectRef.Resource == "mcpservers" || ev.ObjectRef.Subresource != "":
		w.Other++
	default:
		w.Children++
	}
	if ev.ResponseStatus != nil && ev.ResponseStatus.Code >= 400 {
		w.Failed++
	}
	return ev.StageTimestamp, nil
}

// auditTail counts the manager's writes in the apiserver's audit log as it grows. The
// log backend runs in blocking mode, so a write is on disk before its response is sent.
type auditTail struct {
	path   string
	mu     sync.Mutex
	offset int64
	counts writeCounts
	last   time.Time // completion of the manager's latest write
}

func (a *auditTail) lastWrite() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

func (a *auditTail) read() (writeCounts, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.Open(a.path)
	if os.IsNotExist(err) {
		return a.counts, nil
	}
	if err != nil {
		return a.counts, err
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(a.offset, io.SeekStart); err != nil {
		return a.counts, err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return a.counts, nil // a partial last line is read again next time
		}
		if err != nil {
			return a.counts, err
		}
		a.offset += int64(len(line))
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		at, err := a.counts.classify(line)
		if err != nil {
			return a.counts, err
		}
		if at.After(a.last) {
			a.last = at
		}
	}
}

// promCounts is what the bench reads from the manager's own /metrics.
type promCounts struct {
	Writes     float64 // rest_client_requests_total for POST, PUT, PATCH, DELETE
	Reconciles float64 // controller_runtime_reconcile_total for the mcpserver controller
}

func scrape(client *http.Client, addr string) (promCounts, error) {
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return promCounts{}, fmt.Errorf("scraping the manager's metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return promCounts{}, fmt.Errorf("scraping the manager's metrics: %s", resp.Status)
	}
	return parseMetrics(io.LimitReader(resp.Body, 32<<20))
}

func parseMetrics(r io.Reader) (promCounts, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return promCounts{}, fmt.Errorf("parsing the manager's metrics: %w", err)
	}
	var c promCounts
	if f := fams["rest_client_requests_total"]; f != nil {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" {
					switch l.GetValue() {
					case "POST", "PUT", "PATCH", "DELETE":
						c.Writes += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if f := fams["controller_runtime_reconcile_total"]; f != nil {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "mcpserver" {
					c.Reconciles += m.GetCounter().GetValue()
				}
			}
		}
	}
	return c, nil
}

// procStats are the manager's peak resident memory and CPU time, from /proc.
type procStats struct {
	PeakRSSBytes int64
	CPU          time.Duration
}

// clockTicks is USER_HZ, 100 on every Linux the bench runs on.
const clockTicks = 100

func readProc(pid int) (procStats, error) {
	var ps procStats
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	if ps.PeakRSSBytes, err = parseVmHWM(string(status)); err != nil {
		return ps, err
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	ps.CPU, err = parseCPU(string(stat))
	return ps, err
}

func parseVmHWM(status string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected VmHWM line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc status")
}

// parseCPU returns utime+stime from /proc/<pid>/stat. The command name (field 2) may
// hold spaces, so fields are counted after its closing parenthesis.
func parseCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat")
	}
	f := strings.Fields(stat[i+1:])
	// After the name: state(3) ... utime(14) stime(15); f[0] is field 3.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat: %d fields", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc stat: %w", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
