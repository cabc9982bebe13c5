package main

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestParseStat(t *testing.T) {
	g := NewWithT(t)
	// A command name with spaces and a ')' must not shift the fields.
	line := "4242 (we (ird) name) S 17 4242 4242 0 -1 4194304 500 0 0 0 123 45 6 7 20 0 9 0 100 1000 200\n"
	s, err := parseStat([]byte(line))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(s.ppid).To(Equal(17))
	g.Expect(s.cpuTicks).To(Equal(int64(123 + 45)))
	g.Expect(s.childTicks).To(Equal(int64(6 + 7)))

	_, err = parseStat([]byte("4242 (short) S 1 2"))
	g.Expect(err).To(HaveOccurred())
}

func TestCheckResponse(t *testing.T) {
	sse := func(payloads ...string) string {
		var b strings.Builder
		for _, p := range payloads {
			b.WriteString("event: message\ndata: " + p + "\n\n")
		}
		return b.String()
	}
	ok := `{"jsonrpc":"2.0","id":7,"result":{"content":[]}}`
	for _, tc := range []struct {
		name string
		body string
		want errClass
	}{
		{"JSON body", ok, errNone},
		{"SSE stream", sse(ok), errNone},
		{"SSE with a notification first", sse(`{"jsonrpc":"2.0","method":"notifications/progress","params":{}}`, ok), errNone},
		{"SSE cut after the data line", strings.TrimSuffix(sse(ok), "\n"), errTruncated},
		{"SSE cut inside the JSON", "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"res\n\n", errTruncated},
		{"empty body", "", errTruncated},
		{"JSON-RPC error", `{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"bad"}}`, errRPC},
		{"tool error", `{"jsonrpc":"2.0","id":7,"result":{"isError":true}}`, errRPC},
		{"another id only", sse(`{"jsonrpc":"2.0","id":8,"result":{}}`), errRPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			err := checkResponse([]byte(tc.body), 7)
			if tc.want == errNone {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(HaveOccurred())
			g.Expect(classOf(err)).To(Equal(tc.want), err.Error())
		})
	}
}

func TestPercentileAndMedian(t *testing.T) {
	g := NewWithT(t)
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	g.Expect(percentile(d, 0.50)).To(Equal(50 * time.Millisecond))
	g.Expect(percentile(d, 0.99)).To(Equal(99 * time.Millisecond))
	g.Expect(percentile(nil, 0.5)).To(BeZero())
	g.Expect(median([]time.Duration{3, 1, 2, 10})).To(Equal(time.Duration(2))) // (2+3)/2 truncated
	g.Expect(medianF([]float64{nan, 4, 1})).To(Equal(2.5))
	g.Expect(math.IsNaN(medianF([]float64{nan}))).To(BeTrue())
}

// TestBareProxyRelaysStreams sends a POST through the bare proxy to an SSE upstream and
// expects the whole stream and the upstream's headers back.
func TestBareProxyRelaysStreams(t *testing.T) {
	g := NewWithT(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Mcp-Session-Id", "s1")
		_, _ = io.WriteString(w, "event: message\ndata: "+string(body)+"\n\n")
	}))
	defer up.Close()
	u, err := url.Parse(up.URL)
	g.Expect(err).NotTo(HaveOccurred())
	px := httptest.NewServer(newBareProxy(u))
	defer px.Close()

	resp, err := http.Post(px.URL+"/mcp", "application/json", strings.NewReader(`{"id":1}`))
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.Header.Get("Mcp-Session-Id")).To(Equal("s1"))
	g.Expect(string(b)).To(Equal("event: message\ndata: {\"id\":1}\n\n"))

	big := strings.Repeat("x", proxyMaxBody+1)
	resp2, err := http.Post(px.URL+"/mcp", "application/json", strings.NewReader(big))
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp2.Body.Close()
	g.Expect(resp2.StatusCode).To(Equal(http.StatusRequestEntityTooLarge))
}

// Target (f) is the runtime of (d) with what a config can turn off turned off; the rest of
// the config (listener, Origin allowlist, limits, upstream) stays as (d)'s.
func TestChecksOffConfig(t *testing.T) {
	g := NewWithT(t)
	b := &bench{dir: t.TempDir(), pk: &pki{certFile: "tls.crt", keyFile: "tls.key", jwtPubFile: "jwt.pub"}}
	d, err := b.runtimeConfig("runtime-d", "127.0.0.1:1", "127.0.0.1:2", "", 0, nil)
	g.Expect(err).NotTo(HaveOccurred())
	f, err := b.runtimeConfig("runtime-f", "127.0.0.1:1", "127.0.0.1:2", "", 0, checksOff)
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(d.TLS.Insecure).To(BeFalse())
	g.Expect(d.Auth.JWT).To(HaveLen(1))
	g.Expect(d.Audit.Disabled || d.Metrics.Disabled || d.Tools.SkipArgumentValidation).To(BeFalse())

	g.Expect(f.TLS.Insecure).To(BeTrue())
	g.Expect(f.Auth.Anonymous).To(BeTrue())
	g.Expect(f.Auth.JWT).To(BeEmpty())
	g.Expect(f.Tools.SkipArgumentValidation).To(BeTrue())
	g.Expect(f.Audit.Disabled).To(BeTrue())
	g.Expect(f.Metrics.Disabled).To(BeTrue())
	g.Expect(f.Origins).To(Equal(d.Origins))
	g.Expect(f.Limits).To(Equal(d.Limits))
	g.Expect(f.Upstream).To(Equal(d.Upstream))
}
