package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// Clients that send a request's headers and then stall on its body must not hold the
// runtime's connections: neither one whose request is read (anonymous here) nor one whose
// request is refused before its body is read (foreign Origin: net/http still reads the
// rest of the body before it answers).
func TestStalledBodiesDoNotHoldConnections(t *testing.T) {
	g := NewWithT(t)
	h := startTestRuntime(t, func(c *config.Config) {
		c.Limits.MaxConnections, c.Limits.MaxConnectionsPerPrincipal = 4, 4
		c.Limits.ReadBodyTimeout = config.D(300 * time.Millisecond)
	}, []string{everythingServer(t)})
	addr := strings.TrimSuffix(strings.TrimPrefix(h.url, "http://"), "/mcp")

	var stalled []net.Conn
	for i := range 4 {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		g.Expect(err).NotTo(HaveOccurred())
		t.Cleanup(func() { _ = conn.Close() })
		origin := ""
		if i%2 == 1 {
			origin = "Origin: https://evil.example\r\n"
		}
		_, err = conn.Write([]byte("POST /mcp HTTP/1.1\r\nHost: " + addr + "\r\n" + origin +
			"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{"))
		g.Expect(err).NotTo(HaveOccurred())
		stalled = append(stalled, conn)
	}

	// Every stalled connection gets its answer (and is closed) once the body deadline passes.
	for i, conn := range stalled {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		g.Expect(err).NotTo(HaveOccurred(), "stalled connection %d got no answer", i)
		_ = resp.Body.Close()
		g.Expect(resp.StatusCode).To(BeNumerically(">=", 400), "stalled connection %d", i)
	}

	// And a well-behaved client is served.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp := h.post(ctx, t, "", "application/json, text/event-stream", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
}

// A client that pipelines requests and never reads the answers must not hold the handler
// (and the answer it is writing) forever: the write times out and the connection closes.
func TestAnswersToAClientThatStopsReadingTimeOut(t *testing.T) {
	g := NewWithT(t)
	defer func(d time.Duration) { answerWriteTimeout = d }(answerWriteTimeout)
	answerWriteTimeout = 300 * time.Millisecond
	h := startTestRuntime(t, func(c *config.Config) { c.Limits.RequestsPerSecond = -1 }, []string{everythingServer(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	init := h.post(ctx, t, "", "application/json", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	_ = init.Body.Close()
	sid := init.Header.Get("Mcp-Session-Id")
	g.Expect(sid).NotTo(BeEmpty())

	addr := strings.TrimSuffix(strings.TrimPrefix(h.url, "http://"), "/mcp")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = conn.Close() }()
	// A small receive buffer, and tools/list answers of ~5 KiB each: the runtime's writes
	// block after a few hundred answers.
	g.Expect(conn.(*net.TCPConn).SetReadBuffer(16 << 10)).To(Succeed())
	const requests = 3000
	go func() {
		body := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
		req := "POST /mcp HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\nAccept: application/json\r\n" +
			"Mcp-Session-Id: " + sid + "\r\nMcp-Protocol-Version: 2025-11-25\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, _ = conn.Write([]byte(strings.Repeat(req, requests)))
	}()
	time.Sleep(2 * time.Second) // the runtime's write blocks, then times out

	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	answered := 0
	for err == nil {
		var resp *http.Response
		if resp, err = http.ReadResponse(br, nil); err == nil {
			_, err = io.Copy(io.Discard, resp.Body) // an error here: cut mid-answer
			_ = resp.Body.Close()
			answered++
		}
	}
	var ne net.Error
	g.Expect(errors.As(err, &ne) && ne.Timeout()).To(BeFalse(), "the runtime should have closed the connection (after %d answers): %v", answered, err)
	g.Expect(answered).To(BeNumerically("<", requests))
}
