package main

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestClassifyCountsOnlyTheManagersCompletedWrites(t *testing.T) {
	g := NewWithT(t)
	lines := []string{
		`{"stage":"ResponseComplete","verb":"patch","user":{"username":"mcp-fleet-manager"},"objectRef":{"resource":"deployments","apiGroup":"apps"},"responseStatus":{"code":200}}`,
		`{"stage":"ResponseComplete","verb":"create","user":{"username":"mcp-fleet-manager"},"objectRef":{"resource":"serviceaccounts"},"responseStatus":{"code":409}}`,
		`{"stage":"ResponseComplete","verb":"patch","user":{"username":"mcp-fleet-manager"},"objectRef":{"resource":"mcpservers","subresource":"status"},"responseStatus":{"code":200}}`,
		`{"stage":"ResponseComplete","verb":"create","user":{"username":"mcp-fleet-manager"},"objectRef":{"resource":"events","apiGroup":"events.k8s.io"},"responseStatus":{"code":201}}`,
		`{"stage":"ResponseComplete","verb":"update","user":{"username":"mcp-fleet-manager"},"objectRef":{"resource":"mcpservers"},"responseStatus":{"code":200}}`,
		// Not counted: another user, a read, an earlier stage.
		`{"stage":"ResponseComplete","verb":"update","user":{"username":"bench-operator"},"objectRef":{"resource":"deployments","subresource":"status"}}`,
		`{"stage":"ResponseComplete","verb":"get","user":{"username":"mcp-fleet-manager"},"objectRef":{"resource":"deployments"}}`,
		`{"stage":"ResponseStarted","verb":"patch","user":{"username":"mcp-fleet-manager"},"objectRef":{"resource":"deployments"}}`,
	}
	var w writeCounts
	for _, l := range lines {
		_, err := w.classify([]byte(l))
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(w).To(Equal(writeCounts{Children: 2, Status: 1, Events: 1, Other: 1, Failed: 1}))
	g.Expect(w.Total()).To(Equal(5))
	_, err := w.classify([]byte("{not json"))
	g.Expect(err).To(HaveOccurred())
	at, err := w.classify([]byte(`{"stage":"ResponseComplete","verb":"patch","user":{"username":"mcp-fleet-manager"},"objectRef":{"resource":"services"},"stageTimestamp":"2026-05-01T10:00:02.500000Z"}`))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(at).To(Equal(time.Date(2026, 5, 1, 10, 0, 2, 500000000, time.UTC)))
}

func TestParseProc(t *testing.T) {
	g := NewWithT(t)
	rss, err := parseVmHWM("Name:\tmanager\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rss).To(Equal(int64(50 << 20)))
	_, err = parseVmHWM("Name:\tmanager\n")
	g.Expect(err).To(HaveOccurred())

	// A command name with spaces and parentheses must not shift the fields.
	stat := "4242 (my (odd) mgr) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 9 0 100 0 0"
	cpu, err := parseCPU(stat)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cpu).To(Equal(3800 * time.Millisecond))
	_, err = parseCPU("4242 (x) S 1")
	g.Expect(err).To(HaveOccurred())
}

func TestParseMetricsSumsWritesAndReconciles(t *testing.T) {
	g := NewWithT(t)
	text := `# TYPE rest_client_requests_total counter
rest_client_requests_total{code="200",host="127.0.0.1:1",method="GET"} 40
rest_client_requests_total{code="200",host="127.0.0.1:1",method="PATCH"} 7
rest_client_requests_total{code="201",host="127.0.0.1:1",method="POST"} 2
rest_client_requests_total{code="409",host="127.0.0.1:1",method="PUT"} 1
# TYPE controller_runtime_reconcile_total counter
controller_runtime_reconcile_total{controller="mcpserver",result="success"} 11
controller_runtime_reconcile_total{controller="mcpserver",result="error"} 1
controller_runtime_reconcile_total{controller="other",result="success"} 100
`
	c, err := parseMetrics(strings.NewReader(text))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c).To(Equal(promCounts{Writes: 10, Reconciles: 12}))
}
