package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// A WebSocket opened with an API key is closed (1008) once the key's file is removed, as
// one opened with a JWT is at the token's expiry: a revoked key must not keep a socket.
func TestAWebSocketEndsWhenItsAPIKeyIsRevoked(t *testing.T) {
	g := NewWithT(t)
	keys := t.TempDir()
	const key = "mcpk_revoke-test-0123456789abcdef"
	g.Expect(os.WriteFile(filepath.Join(keys, "bot"), []byte(auth.HashAPIKey(key)), 0o600)).To(Succeed())
	h := startTestRuntimeWith(t, func(c *config.Config) {
		c.Auth = config.Auth{APIKeys: &config.APIKeys{Dir: keys}, WebSocket: config.WebSocketAuth{Tickets: config.Tickets{Disabled: true}}}
		c.Endpoint.Transports = []string{config.TransportStreamableHTTP, config.TransportWebSocket}
	}, Options{Command: []string{everythingServer(t)}, AuthReloadInterval: 100 * time.Millisecond})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, strings.Replace(h.url, "http://", "ws://", 1), &websocket.DialOptions{
		Subprotocols: []string{"mcp"},
		HTTPHeader:   map[string][]string{"Authorization": {"Bearer " + key}},
	})
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = conn.CloseNow() }()
	g.Expect(conn.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))).To(Succeed())
	_, answer, err := conn.Read(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(answer)).To(ContainSubstring(`"result"`))

	g.Expect(os.Remove(filepath.Join(keys, "bot"))).To(Succeed())
	start := time.Now()
	_, _, err = conn.Read(ctx)
	g.Expect(websocket.CloseStatus(err)).To(Equal(websocket.StatusPolicyViolation), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("credentials revoked"))
	g.Expect(time.Since(start)).To(BeNumerically("<", 5*time.Second))
}

// A stream's context ends when its caller's credential is revoked, not only at its expiry.
func TestUntilExpiryEndsAtRevocation(t *testing.T) {
	g := NewWithT(t)
	revoked := make(chan struct{})
	ctx, cancel := untilExpiry(context.Background(), caller{hasAuth: true, principal: auth.Principal{Subject: "bot", Revoked: revoked}})
	defer cancel()
	g.Consistently(ctx.Done()).WithTimeout(50 * time.Millisecond).ShouldNot(BeClosed())
	close(revoked)
	g.Eventually(ctx.Done()).Should(BeClosed())

	expiring, cancel2 := untilExpiry(context.Background(), caller{hasAuth: true, principal: auth.Principal{Subject: "alice", Expires: time.Now().Add(20 * time.Millisecond)}})
	defer cancel2()
	g.Eventually(expiring.Done()).Should(BeClosed())
	anonymous, cancel3 := untilExpiry(context.Background(), caller{})
	defer cancel3()
	g.Expect(anonymous.Done()).To(BeNil())
}
