package browsercheck

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Counters is one scrape of the runtime's own (mcp_runtime_*) counters: series ("name{k="v",…}", labels sorted)
// to value.
type Counters map[string]float64

// Delta is what changed between two scrapes: series to increase (only non-zero ones).
type Delta map[string]float64

// Sum adds up the series of metric name whose labels include every pair of match
// ("k", "v", …).
func (d Delta) Sum(name string, match ...string) float64 {
	var sum float64
	for series, v := range d {
		if seriesMatches(series, name, match) {
			sum += v
		}
	}
	return sum
}

func seriesMatches(series, name string, match []string) bool {
	n, labels, _ := strings.Cut(series, "{")
	if n != name {
		return false
	}
	for i := 0; i+1 < len(match); i += 2 {
		if !strings.Contains(","+strings.TrimSuffix(labels, "}")+",", fmt.Sprintf(",%s=%q,", match[i], match[i+1])) {
			return false
		}
	}
	return true
}

// Sub is the change from before to c.
func (c Counters) Sub(before Counters) Delta {
	d := Delta{}
	for k, v := range c {
		if diff := v - before[k]; diff != 0 {
			d[k] = diff
		}
	}
	for k, v := range before {
		if _, ok := c[k]; !ok && v != 0 {
			d[k] = -v
		}
	}
	return d
}

// scrapeCounters reads the counters of a Prometheus text endpoint (the runtime's health
// port /metrics).
func scrapeCounters(ctx context.Context, url string) (Counters, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("metricsURL %q: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping metricsURL %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping metricsURL %s: status %d", url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("parsing the metrics of %s: %w", url, err)
	}
	out := Counters{}
	for name, f := range families {
		if !strings.HasPrefix(name, "mcp_runtime_") || f.GetType().String() != "COUNTER" {
			continue
		}
		for _, m := range f.GetMetric() {
			pairs := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				pairs = append(pairs, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(pairs)
			out[name+"{"+strings.Join(pairs, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return out, nil
}
