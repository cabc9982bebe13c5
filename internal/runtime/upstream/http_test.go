package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/testutil"
)

// freeAddr returns a 127.0.0.1 address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// serveHTTP runs everything-server in Streamable HTTP mode until stopped or the test ends.
func serveHTTP(t *testing.T, addr string, stateless bool) (stop func()) {
	cmd := exec.Command(everythingServer(t), "-http", addr, fmt.Sprintf("-stateless=%t", stateless))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(stop)
	return stop
}

func httpConfig(addr string) config.Upstream {
	c := testConfig()
	c.Transport = config.UpstreamHTTP
	c.URL = "http://" + addr + "/mcp"
	return c
}

// recorder notes every request the relay makes to the server.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen []exchangeRecord
}

type exchangeRecord struct {
	method, sessionID string
	status            int
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	rec := exchangeRecord{method: req.Method, sessionID: req.Header.Get("Mcp-Session-Id")}
	if err == nil {
		rec.status = resp.StatusCode
	}
	r.mu.Lock()
	r.seen = append(r.seen, rec)
	r.mu.Unlock()
	return resp, err
}

// requests counts requests per session id with this method (and status, unless 0).
func (r *recorder) requests(method string, status int) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, e := range r.seen {
		if e.method == method && (status == 0 || e.status == status) {
			out[e.sessionID]++
		}
	}
	return out
}

func TestHTTPUpstreamRelaysStatefulSessions(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	addr := freeAddr(t)
	serveHTTP(t, addr, false)
	rec := &recorder{next: DefaultHTTPClient().Transport}
	opts := testOptions()
	opts.HTTPClient = &http.Client{Transport: rec}
	u, err := NewHTTP(httpConfig(addr), opts)
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	// The readiness probe's session was ended again.
	g.Eventually(func() int { return len(rec.requests(http.MethodDelete, 0)) }).Should(Equal(1))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runSDKClients(ctx, t, u, 3)

	// Each client had its own upstream session, and each was ended with DELETE.
	posts := rec.requests(http.MethodPost, http.StatusOK)
	delete(posts, "")
	g.Expect(posts).To(HaveLen(3))
	g.Eventually(func() map[string]int { return rec.requests(http.MethodDelete, 0) }).Should(HaveLen(4))
	for sid := range posts {
		g.Expect(rec.requests(http.MethodDelete, 0)).To(HaveKey(sid))
	}
}

func TestHTTPUpstreamDeliversTheServerStream(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	addr := freeAddr(t)
	serveHTTP(t, addr, false)
	rec := &recorder{next: DefaultHTTPClient().Transport}
	opts := testOptions()
	opts.HTTPClient = &http.Client{Transport: rec}
	u, err := NewHTTP(httpConfig(addr), opts)
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	c := newClient(t, u)
	other := newClient(t, u)

	c.send(`{"jsonrpc":"2.0","id":"a","method":"initialize","params":` + initializeParams + `}`)
	c.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`) // waits for the session id
	g.Expect(c.await(responseTo(`"a"`), 5*time.Second)).To(HaveKeyWithValue("result", HaveKey("serverInfo")))
	// The GET stream is open once the server answered it.
	g.Eventually(func() int { return len(rec.requests(http.MethodGet, http.StatusOK)) }).WithTimeout(5 * time.Second).Should(Equal(1))

	c.send(`{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"test_trigger_tool_change"}}`)
	c.await(responseTo(`"b"`), 5*time.Second)
	c.await(method("notifications/tools/list_changed"), 5*time.Second)
	g.Expect(other.find(method("notifications/tools/list_changed"))).To(BeNil(), "HTTP sessions are separate upstream sessions")

	// Progress notifications arrive on the request's own SSE stream, token untouched.
	c.send(`{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"test_tool_with_progress","_meta":{"progressToken":"tok"}}}`)
	g.Expect(text(c.await(responseTo(`"c"`), 5*time.Second))).To(Equal("tok"))
	g.Expect(c.count(method("notifications/progress"))).To(Equal(3))

	// This server closes the call's stream early but keeps no events to resume from
	// ("stream replay unsupported"): the call fails at once instead of hanging.
	c.send(`{"jsonrpc":"2.0","id":"d","method":"tools/call","params":{"name":"test_reconnection"}}`)
	g.Expect(errorCode(c.await(responseTo(`"d"`), 5*time.Second))).To(BeEquivalentTo(-32603))
}

func TestHTTPUpstreamResumesAStreamTheServerClosed(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	// An SDK server with an event store, whose tool closes its request's SSE stream
	// (SEP-1699): the answer must be fetched with GET + Last-Event-ID.
	server := mcp.NewServer(&mcp.Implementation{Name: "resumable", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "reconnect"}, func(ctx context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: 1})
		req.Extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: 10 * time.Millisecond})
		time.Sleep(50 * time.Millisecond)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "after reconnect"}}}, nil, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{EventStore: mcp.NewMemoryEventStore(nil)}))
	t.Cleanup(srv.Close) // after the upstream (cleanups run last-in first-out): it holds a GET stream open
	rec := &recorder{next: DefaultHTTPClient().Transport}
	opts := testOptions()
	opts.HTTPClient = &http.Client{Transport: rec}
	cfg := testConfig()
	cfg.Transport, cfg.URL = config.UpstreamHTTP, srv.URL
	u, err := NewHTTP(cfg, opts)
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	c := newClient(t, u)
	c.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":` + initializeParams + `}`)
	// No notifications/initialized: the relay opens no listening GET stream, so the
	// answer can only arrive on the resumed request stream.
	c.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"reconnect","_meta":{"progressToken":"p"}}}`)
	g.Expect(text(c.await(responseTo(`2`), 5*time.Second))).To(Equal("after reconnect"))
	g.Expect(c.count(method("notifications/progress"))).To(Equal(1), "the resumed stream does not repeat events")
	var resumed int
	for _, e := range rec.seen {
		if e.method == http.MethodGet && e.status == http.StatusOK {
			resumed++
		}
	}
	g.Expect(resumed).To(Equal(1))
}

func TestHTTPUpstreamStatelessServer(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	addr := freeAddr(t)
	serveHTTP(t, addr, true)
	u, err := NewHTTP(httpConfig(addr), testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)

	var wg sync.WaitGroup
	clients := make([]*client, 3)
	for i := range clients {
		clients[i] = newClient(t, u)
		wg.Add(1)
		go func() {
			defer wg.Done()
			clients[i].send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":` + initializeParams + `}`)
			clients[i].send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
			clients[i].send(fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_x_mcp_header","arguments":{"region":"r%d"}}}`, i))
		}()
	}
	wg.Wait()
	for i, c := range clients {
		g.Expect(c.await(responseTo(`1`), 5*time.Second)).To(HaveKey("result"))
		g.Expect(text(c.await(responseTo(`2`), 5*time.Second))).To(Equal(fmt.Sprintf("region=r%d", i)))
	}
}

func TestHTTPUpstreamDownAnswersWithErrorsAndRecovers(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	addr := freeAddr(t)
	u, err := NewHTTP(httpConfig(addr), testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	u.(*httpUpstream).healthEvery = 100 * time.Millisecond
	g.Expect(u.Start(context.Background())).To(Succeed())
	t.Cleanup(func() { _ = u.Close(context.Background()) })
	g.Consistently(u.Ready).WithTimeout(200 * time.Millisecond).Should(BeFalse())

	c := newClient(t, u)
	c.send(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	resp := c.await(responseTo(`1`), 2*time.Second)
	g.Expect(errorCode(resp)).To(BeEquivalentTo(-32603))
	g.Expect(resp).To(HaveKeyWithValue("error", HaveKeyWithValue("message", ContainSubstring("unreachable"))))

	stop := serveHTTP(t, addr, true)
	g.Eventually(u.Ready).WithTimeout(5 * time.Second).Should(BeTrue())
	c.send(`{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	g.Expect(c.await(responseTo(`2`), 5*time.Second)).To(HaveKey("result"))

	// A server that dies while nobody talks to it is noticed by the health check.
	stop()
	g.Eventually(u.Ready).WithTimeout(2 * time.Second).Should(BeFalse())
}

func TestNewHTTPRefusesABadURL(t *testing.T) {
	g := NewWithT(t)
	for _, bad := range []string{"", "127.0.0.1:8080", "ftp://127.0.0.1/mcp", "http:///mcp"} {
		c := testConfig()
		c.URL = bad
		_, err := NewHTTP(c, Options{})
		g.Expect(err).To(HaveOccurred(), bad)
	}
}

func TestHTTPUpstreamDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	var elsewhereHits atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		elsewhereHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	}))
	t.Cleanup(elsewhere.Close)
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/mcp", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirecting.Close)
	c := testConfig()
	c.Transport, c.URL = config.UpstreamHTTP, redirecting.URL+"/mcp"
	u, err := NewHTTP(c, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(u.Start(context.Background())).To(Succeed())
	t.Cleanup(func() { _ = u.Close(context.Background()) })

	cl := newClient(t, u)
	cl.send(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	g.Expect(errorCode(cl.await(responseTo(`1`), 3*time.Second))).To(BeEquivalentTo(-32603))
	g.Expect(u.Ready()).To(BeFalse(), "a server that only redirects never passes the readiness probe")
	g.Expect(elsewhereHits.Load()).To(BeZero(), "a redirect carried a request to another address")
}

// A password in upstream.url (Go's client sends it as basic auth) never reaches the logs.
func TestHTTPUpstreamLogsTheURLWithoutItsPassword(t *testing.T) {
	g := NewWithT(t)
	var logs testutil.SyncBuffer
	opts := testOptions()
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	c := testConfig()
	c.Transport, c.URL = config.UpstreamHTTP, "http://relay:s3cret-pw@"+freeAddr(t)+"/mcp"
	u, err := NewHTTP(c, opts)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(u.Start(context.Background())).To(Succeed())
	t.Cleanup(func() { _ = u.Close(context.Background()) })
	g.Eventually(logs.String).WithTimeout(5 * time.Second).Should(ContainSubstring("upstream probe failed"))
	g.Expect(logs.String()).NotTo(ContainSubstring("s3cret-pw"))
	g.Expect(logs.String()).To(ContainSubstring("relay:xxxxx@"))
}

// The user:password of upstream.url reaches the server as basic auth on every request.
func TestHTTPUpstreamSendsTheURLsCredentials(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	var unauthorized atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pw, ok := r.BasicAuth(); !ok || user != "relay" || pw != "s3cret" {
			unauthorized.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodPost {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}`))
	}))
	t.Cleanup(srv.Close)
	c := testConfig()
	c.Transport, c.URL = config.UpstreamHTTP, strings.Replace(srv.URL, "http://", "http://relay:s3cret@", 1)+"/mcp"
	u, err := NewHTTP(c, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(u.Start(context.Background())).To(Succeed())
	t.Cleanup(func() { _ = u.Close(context.Background()) })
	g.Eventually(u.Ready).WithTimeout(5 * time.Second).Should(BeTrue())
	g.Expect(unauthorized.Load()).To(BeZero())
}
