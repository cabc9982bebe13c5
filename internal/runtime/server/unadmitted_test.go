package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// Every tools/call attempt has its audit line, also one refused before its message was
// admitted: an unknown session, no session, an unknown protocol version, a batch that the
// session's revision does not allow.
func TestToolCallsRefusedBeforeAdmissionAreAudited(t *testing.T) {
	g := NewWithT(t)
	h := startTestRuntime(t, nil, []string{everythingServer(t)})
	sid := h.open(t)
	call := func(id, tool string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`
	}
	post := func(sid, version, body string) int {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, h.url, strings.NewReader(body))
		g.Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", bothAccepted)
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
		}
		if version != "" {
			req.Header.Set("Mcp-Protocol-Version", version)
		}
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	g.Expect(post("no-such-session", "2025-11-25", call("1", "echo_unknown_session"))).To(Equal(http.StatusNotFound))
	g.Expect(post("", "2025-11-25", call("2", "echo_no_session"))).To(Equal(http.StatusBadRequest))
	g.Expect(post(sid, "1999-01-01", call("3", "echo_bad_version"))).To(Equal(http.StatusBadRequest))
	g.Expect(post(sid, "2025-11-25", "["+call("4", "echo_in_batch")+`,{"jsonrpc":"2.0","id":5,"method":"ping"}]`)).To(Equal(http.StatusBadRequest))
	g.Expect(post(sid, "2025-11-25", `{"jsonrpc":`)).To(Equal(http.StatusBadRequest), "no message: nothing to audit")

	want := map[string]string{
		"echo_unknown_session": "refused:session_not_found",
		"echo_no_session":      "refused:session_required",
		"echo_bad_version":     "refused:unsupported_version",
		"echo_in_batch":        "refused:batch_not_allowed",
	}
	g.Eventually(func() map[string]string {
		got := map[string]string{}
		for _, l := range h.auditLines(t) {
			if tool, _ := l["tool"].(string); strings.HasPrefix(tool, "echo_") {
				outcome, _ := l["outcome"].(string)
				reason, _ := l["reason"].(string)
				got[tool] = outcome + ":" + reason
			}
		}
		return got
	}, 5*time.Second, 50*time.Millisecond).Should(Equal(want))
}
