package browsercheck

import (
	"os"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestSPKIHashesMatchOpenSSL(t *testing.T) {
	g := NewWithT(t)
	pemData, err := os.ReadFile("testdata/leaf.pem")
	g.Expect(err).NotTo(HaveOccurred())
	// openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64
	g.Expect(SPKIHashes(pemData)).To(Equal([]string{"qu6deL6hNA1cW1V1HfHgCdnUt4MV9uVp8hD/XthnjtQ="}))
	_, err = SPKIHashes([]byte("not PEM"))
	g.Expect(err).To(MatchError(ContainSubstring("no CERTIFICATE block")))
}

func validTarget() Target {
	return Target{
		BaseURL: "https://mcp.team-a.svc:443", Path: "/mcp", ResolveTo: "10.96.0.12:443",
		TrustSPKI: []string{"qu6deL6hNA1cW1V1HfHgCdnUt4MV9uVp8hD/XthnjtQ="}, Token: "jwt",
		Pages: &Pages{AllowedOrigin: "http://127.0.0.1:1", ForeignOrigin: "http://127.0.0.1:2"}, Node: "node",
	}
}

func TestTargetValidation(t *testing.T) {
	g := NewWithT(t)
	g.Expect(validTarget().validate()).To(Succeed())
	for field, edit := range map[string]func(*Target){
		"baseURL":   func(t *Target) { t.BaseURL = "http://mcp.team-a.svc" },
		"no path":   func(t *Target) { t.BaseURL = "https://mcp.team-a.svc/mcp" },
		"path":      func(t *Target) { t.Path = "mcp" },
		"resolveTo": func(t *Target) { t.ResolveTo = "mcp.team-a.svc:443" },
		"trustSPKI": func(t *Target) { t.TrustSPKI = []string{"abc"} },
		"token":     func(t *Target) { t.Token = "" },
		"pages":     func(t *Target) { t.Pages = nil },
		"node":      func(t *Target) { t.Node = "" },
		"wantText":  func(t *Target) { t.Tool = "echo" },
	} {
		tg := validTarget()
		edit(&tg)
		err := tg.validate()
		g.Expect(err).To(HaveOccurred(), field)
		g.Expect(strings.ToLower(err.Error())).To(ContainSubstring(strings.ToLower(strings.Fields(field)[len(strings.Fields(field))-1])), field)
	}
}

func TestChromiumFlags(t *testing.T) {
	g := NewWithT(t)
	flags := chromiumFlags(validTarget(), "/tmp/p")
	g.Expect(flags).To(ContainElements("--headless", "--no-sandbox", "--disable-background-networking", "--user-data-dir=/tmp/p",
		"--remote-debugging-port=0", "--host-resolver-rules=MAP mcp.team-a.svc 10.96.0.12:443",
		"--ignore-certificate-errors-spki-list=qu6deL6hNA1cW1V1HfHgCdnUt4MV9uVp8hD/XthnjtQ="))
	g.Expect(slices.ContainsFunc(flags, func(f string) bool { return f == "--ignore-certificate-errors" })).To(BeFalse(), "never trust every certificate")
	tg := validTarget()
	tg.ResolveTo, tg.TrustSPKI = "", nil
	g.Expect(strings.Join(chromiumFlags(tg, "/tmp/p"), " ")).NotTo(Or(ContainSubstring("host-resolver-rules"), ContainSubstring("spki")))
}

func TestDeltaSum(t *testing.T) {
	g := NewWithT(t)
	before := Counters{`mcp_runtime_http_requests_total{code="403",method="GET"}`: 1}
	after := Counters{
		`mcp_runtime_http_requests_total{code="403",method="GET"}`:     3,
		`mcp_runtime_http_requests_total{code="403",method="OPTIONS"}`: 1,
		`mcp_runtime_http_requests_total{code="1403",method="GET"}`:    5,
	}
	d := after.Sub(before)
	g.Expect(d.Sum("mcp_runtime_http_requests_total", "code", "403")).To(Equal(3.0))
	g.Expect(d.Sum("mcp_runtime_http_requests_total", "code", "403", "method", "GET")).To(Equal(2.0))
	g.Expect(d.Sum("mcp_runtime_http_requests_total")).To(Equal(8.0))
	g.Expect(d.Sum("mcp_runtime_http_requests")).To(BeZero())
}

func TestWebsocketsFromCDPEvents(t *testing.T) {
	g := NewWithT(t)
	ws := websockets([]NetEvent{
		{Ev: "ws-created", ID: "1", URL: "wss://h/mcp"},
		{Ev: "ws-created", ID: "2", URL: "wss://h/mcp?ticket=REDACTED"},
		{Ev: "ws-handshake-request", ID: "1", Origin: "http://127.0.0.1:2"},
		{Ev: "ws-frame-error", ID: "1", ErrorText: "Error during WebSocket handshake: Unexpected response code: 403"},
		{Ev: "ws-handshake-response", ID: "2", Status: 101},
		{Ev: "ws-frame-sent", ID: "2"}, {Ev: "ws-frame-received", ID: "2"}, {Ev: "ws-frame-sent", ID: "2"},
	})
	g.Expect(ws).To(HaveLen(2))
	g.Expect(*ws[0]).To(Equal(wsSeen{url: "wss://h/mcp", origin: "http://127.0.0.1:2", frameError: "Error during WebSocket handshake: Unexpected response code: 403"}))
	g.Expect(*ws[1]).To(Equal(wsSeen{url: "wss://h/mcp?ticket=REDACTED", status: 101, sent: 2, received: 1}))
}

func TestRedactTickets(t *testing.T) {
	g := NewWithT(t)
	g.Expect(redact(`{"ticket":"mt1.eyJzdWIiOiJhIn0.q-8_Zz","x":1}`)).To(Equal(`{"ticket":"mt1.REDACTED","x":1}`))
}
