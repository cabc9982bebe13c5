package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/testutil"
)

// TestAccessLineMatchesSlog holds the hand-encoded access line to what slog's JSON handler
// writes for the same record, so log pipelines see one shape for every line: the same
// bytes, except that <, > and & are escaped as encoding/json escapes them (the same
// decoded value).
func TestAccessLineMatchesSlog(t *testing.T) {
	g := NewWithT(t)
	for _, e := range []accessEntry{
		{time: time.Date(2026, 12, 4, 17, 5, 9, 123456789, time.UTC), id: "abc123", method: "POST", path: "/mcp",
			status: 200, bytes: 512, duration: 734 * time.Microsecond, remote: "10.0.0.7:51234", proto: "HTTP/1.1"},
		{time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", -5*3600-30*60)), id: "r-1", method: "GET",
			path: "/a\"b<c>&\\d\u2028\xff\n\x01", status: 403, duration: 2 * time.Second, remote: "[::1]:1", proto: "HTTP/2.0"},
		{time: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), id: "x", method: "GET", path: "/e\u00e9\t\"q\\", status: 101,
			duration: 0, remote: "127.0.0.1:9", proto: "HTTP/1.1"},
		{time: time.Date(2026, 6, 30, 23, 59, 59, 999999999, time.Local), method: "DELETE", path: "",
			status: 0, bytes: -1},
	} {
		var want bytes.Buffer
		h := slog.NewJSONHandler(&want, nil)
		rec := slog.NewRecord(e.time, slog.LevelInfo, "Request", 0)
		rec.AddAttrs(slog.String("requestID", e.id), slog.String("method", e.method), slog.String("path", e.path),
			slog.Int("status", e.status), slog.Int64("bytes", e.bytes), slog.String("duration", e.duration.String()),
			slog.String("remote", e.remote), slog.String("proto", e.proto))
		g.Expect(h.Handle(context.Background(), rec)).To(Succeed())
		got := appendAccessLine(nil, e)
		if !strings.ContainsAny(e.path, "<>&") {
			g.Expect(string(got)).To(Equal(want.String()))
		}
		var gotValue, wantValue map[string]any
		g.Expect(json.Unmarshal(got, &gotValue)).To(Succeed())
		g.Expect(json.Unmarshal(want.Bytes(), &wantValue)).To(Succeed())
		g.Expect(gotValue).To(Equal(wantValue))
	}
}

func TestAccessLogWritesOneLinePerRequestWithoutTheQuery(t *testing.T) {
	g := NewWithT(t)
	var out testutil.SyncBuffer
	h := accessLog(&out)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.Expect(RequestID(r.Context())).NotTo(BeEmpty())
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("short and stout"))
	}))
	for _, tc := range []struct{ target, incomingID string }{
		{"/mcp?ticket=s3cr3t-ticket&access_token=s3cr3t-token", "client-id.1"},
		{"/mcp", "not a sane id!"},
	} {
		req := httptest.NewRequest(http.MethodPost, tc.target, nil)
		req.Header.Set("X-Request-Id", tc.incomingID)
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		g.Expect(rr.Code).To(Equal(http.StatusTeapot))
	}
	logged := out.String()
	g.Expect(logged).NotTo(ContainSubstring("s3cr3t"), "query strings may carry tickets and tokens")
	lines := strings.Split(strings.TrimSuffix(logged, "\n"), "\n")
	g.Expect(lines).To(HaveLen(2))
	var first, second map[string]any
	g.Expect(json.Unmarshal([]byte(lines[0]), &first)).To(Succeed())
	g.Expect(json.Unmarshal([]byte(lines[1]), &second)).To(Succeed())
	g.Expect(first).To(HaveKeyWithValue("msg", "Request"))
	g.Expect(first).To(HaveKeyWithValue("level", "INFO"))
	g.Expect(first).To(HaveKeyWithValue("requestID", "client-id.1"))
	g.Expect(first).To(HaveKeyWithValue("path", "/mcp"))
	g.Expect(first).To(HaveKeyWithValue("status", BeNumerically("==", http.StatusTeapot)))
	g.Expect(first).To(HaveKeyWithValue("bytes", BeNumerically("==", len("short and stout"))))
	g.Expect(second["requestID"]).To(MatchRegexp(`^[0-9a-f]{16}$`), "an insane incoming id is replaced")
}

// Only serveWebSocket may take a request that auth.Middleware passed without a principal
// (an upgrade awaiting its first message); every other handler sits behind principalRequired.
func TestPrincipalRequired(t *testing.T) {
	g := NewWithT(t)
	ran := false
	h := principalRequired(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ran = true }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/mcp/sse", nil))
	g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
	g.Expect(ran).To(BeFalse())

	r := httptest.NewRequest(http.MethodGet, "/mcp/sse", nil)
	h.ServeHTTP(httptest.NewRecorder(), r.WithContext(auth.WithPrincipal(r.Context(), auth.Principal{Method: auth.MethodAPIKey, Subject: "alice"})))
	g.Expect(ran).To(BeTrue())
}

// On HTTP/2 a write deadline resets the stream when it fires, written to or not: a stream
// that goes quiet for longer than answerWriteTimeout after a write must still get its next
// event (a long tool call behind a progress notification, a quiet subscription).
func TestQuietHTTP2StreamOutlivesTheWriteDeadline(t *testing.T) {
	g := NewWithT(t)
	defer func(d time.Duration) { answerWriteTimeout = d }(answerWriteTimeout)
	answerWriteTimeout = 200 * time.Millisecond
	srv := httptest.NewUnstartedServer(writeDeadlines(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		time.Sleep(3 * answerWriteTimeout) // quiet for three deadlines
		_, _ = io.WriteString(w, "data: late\n\n")
		w.(http.Flusher).Flush()
	})))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	g.Expect(resp.ProtoMajor).To(Equal(2))
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred(), "the quiet stream was reset")
	g.Expect(string(body)).To(ContainSubstring("late"))
}
