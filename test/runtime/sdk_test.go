package runtime_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// sdkClient connects the official Go SDK client through the runtime.
func sdkClient(t *testing.T, r *rt, transport mcp.Transport, version string, progress *atomic.Int32) *mcp.ClientSession {
	t.Helper()
	opts := &mcp.ClientOptions{}
	if progress != nil {
		opts.ProgressNotificationHandler = func(context.Context, *mcp.ProgressNotificationClientRequest) { progress.Add(1) }
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "runtime-test", Version: "1"}, opts)
	// The legacy SSE transport ties its stream to the Connect context: keep it for the test.
	s, err := c.Connect(t.Context(), transport, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect (%s): %v", version, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func (r *rt) authedClient(t *testing.T, sub string) *http.Client {
	c := r.client()
	c.Timeout = 0 // streams are long-lived
	c.Transport = bearer{token: r.keys.token(t, sub, nil), base: c.Transport}
	return c
}

// exerciseTools runs the same calls on any session: list, plain call, progress, a schema'd
// tool with valid arguments, and a refused call with invalid ones.
func exerciseTools(t *testing.T, r *rt, s *mcp.ClientSession, progress *atomic.Int32) {
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	list, err := s.ListTools(ctx, nil)
	g.Expect(err).NotTo(HaveOccurred())
	names := map[string]bool{}
	for _, tool := range list.Tools {
		names[tool.Name] = true
	}
	g.Expect(names).To(HaveKey("test_simple_text"))
	g.Expect(names).To(HaveKey("json_schema_2020_12_tool"))

	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text", Arguments: map[string]any{}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.IsError).To(BeFalse())
	g.Expect(res.Content[0].(*mcp.TextContent).Text).To(ContainSubstring("simple text"))

	params := &mcp.CallToolParams{Name: "test_tool_with_progress", Arguments: map[string]any{}}
	params.SetProgressToken("p-1")
	res, err = s.CallTool(ctx, params)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.IsError).To(BeFalse())
	if progress != nil {
		g.Eventually(progress.Load).Should(BeNumerically(">=", 1), "progress notifications relayed")
	}

	res, err = s.CallTool(ctx, &mcp.CallToolParams{Name: "json_schema_2020_12_tool", Arguments: map[string]any{
		"name": "Ada", "address": map[string]any{"street": "1 Main St", "city": "London"}, "contactMethod": "email", "email": "ada@example.com",
	}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.IsError).To(BeFalse())

	before := len(r.up.Sent(`"name":5`))
	_, err = s.CallTool(ctx, &mcp.CallToolParams{Name: "json_schema_2020_12_tool", Arguments: map[string]any{"name": 5}})
	var werr *jsonrpc.Error
	g.Expect(errors.As(err, &werr)).To(BeTrue(), "want a JSON-RPC error, got %v", err)
	g.Expect(werr.Code).To(Equal(int64(-32602)))
	g.Expect(werr.Message).To(ContainSubstring("/name"))
	g.Expect(r.up.Sent(`"name":5`)).To(HaveLen(before), "refused arguments never reach the upstream")
}

func TestGoSDKStreamableHTTP20251125(t *testing.T) {
	r := start(t, newKeys(t), nil)
	var progress atomic.Int32
	s := sdkClient(t, r, &mcp.StreamableClientTransport{Endpoint: r.url("/mcp"), HTTPClient: r.authedClient(t, "alice"), MaxRetries: -1}, "2025-11-25", &progress)
	NewWithT(t).Expect(s.InitializeResult().ProtocolVersion).To(Equal("2025-11-25"))
	exerciseTools(t, r, s, &progress)
}

func TestGoSDKStreamableHTTPStateless20260728(t *testing.T) {
	r := start(t, newKeys(t), nil)
	var progress atomic.Int32
	s := sdkClient(t, r, &mcp.StreamableClientTransport{Endpoint: r.url("/mcp"), HTTPClient: r.authedClient(t, "alice"), MaxRetries: -1}, "2026-07-28", &progress)
	NewWithT(t).Expect(s.InitializeResult().ProtocolVersion).To(Equal("2026-07-28"))
	exerciseTools(t, r, s, &progress)

	// The SDK mirrors x-mcp-header arguments into Mcp-Param-* headers (Base64-wrapped when
	// not plain ASCII); the runtime checks them against the body and lets them through.
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "test_x_mcp_header", Arguments: map[string]any{"region": "Zürich", "level": 2}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.IsError).To(BeFalse())
	g.Expect(r.up.Sent("Zürich")).To(HaveLen(1))
}

func TestGoSDKLegacySSE(t *testing.T) {
	r := start(t, newKeys(t), nil)
	var progress atomic.Int32
	s := sdkClient(t, r, &mcp.SSEClientTransport{Endpoint: r.url("/mcp/sse"), HTTPClient: r.authedClient(t, "alice")}, "2024-11-05", &progress)
	exerciseTools(t, r, s, &progress)
}

// TestGoSDKThroughHTTPUpstream fronts the everything-server running as a (stateful)
// Streamable HTTP server on localhost, the sidecar layout.
func TestGoSDKThroughHTTPUpstream(t *testing.T) {
	g := NewWithT(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	addr := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.Command(everythingServer(t), "-http", addr, "-stateless=false")
	g.Expect(cmd.Start()).To(Succeed())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	g.Eventually(func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())

	r := start(t, newKeys(t), func(c *config.Config) {
		c.Upstream.Transport = config.UpstreamHTTP
		c.Upstream.URL = "http://" + addr + "/mcp"
	})
	var progress atomic.Int32
	s := sdkClient(t, r, &mcp.StreamableClientTransport{Endpoint: r.url("/mcp"), HTTPClient: r.authedClient(t, "alice"), MaxRetries: -1}, "2025-11-25", &progress)
	exerciseTools(t, r, s, &progress)
}

// A 2026-07-28 request must not change how the stdio server treats the session-era
// clients it also serves: the go-sdk server, once it has seen a stateless-revision request
// on its stdio session, refuses server-to-client requests on it. The runtime keeps
// stateless-revision requests on a process of their own, so a 2025-11-25 client is still
// asked for elicitation afterwards.
func TestStatelessRequestsDoNotChangeTheSessionEraServer(t *testing.T) {
	g := NewWithT(t)
	r := start(t, newKeys(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	modern := sdkClient(t, r, &mcp.StreamableClientTransport{Endpoint: r.url("/mcp"), HTTPClient: r.authedClient(t, "alice"), MaxRetries: -1}, "2026-07-28", nil)
	res, err := modern.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text", Arguments: map[string]any{}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.IsError).To(BeFalse())

	var asked atomic.Int32
	c := mcp.NewClient(&mcp.Implementation{Name: "legacy", Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			asked.Add(1)
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"username": "ada"}}, nil
		},
	})
	legacy, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: r.url("/mcp"), HTTPClient: r.authedClient(t, "bob"), MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = legacy.Close() }()
	res, err = legacy.CallTool(ctx, &mcp.CallToolParams{Name: "test_elicitation", Arguments: map[string]any{"message": "name?"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.IsError).To(BeFalse(), "%+v", res.Content)
	g.Expect(asked.Load()).To(Equal(int32(1)))
	g.Expect(res.Content[0].(*mcp.TextContent).Text).To(ContainSubstring("username:ada"))

	// And the other way round: the stateless client still works after the legacy one.
	res, err = modern.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text", Arguments: map[string]any{}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.IsError).To(BeFalse())
}
