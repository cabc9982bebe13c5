package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// rawWS is a hand-driven WebSocket client: it sends frames exactly as a test needs them
// (fragmented, with pings in between) and reads the server's frames one by one.
type rawWS struct {
	t    *testing.T
	conn net.Conn
}

func dialRawWS(t *testing.T, url string) *rawWS {
	t.Helper()
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/mcp")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	key := "dGhlIHNhbXBsZSBub25jZQ==" // the example of RFC 6455 section 1.3
	req := "GET /mcp HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Protocol: mcp\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var head []byte
	b := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := conn.Read(b); err != nil {
			t.Fatalf("reading the upgrade answer: %v (%q)", err, head)
		}
		head = append(head, b[0])
	}
	g := NewWithT(t)
	g.Expect(string(head)).To(HavePrefix("HTTP/1.1 101"))
	g.Expect(string(head)).To(ContainSubstring("Sec-Websocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")) // its answer there
	g.Expect(string(head)).To(ContainSubstring("Sec-Websocket-Protocol: mcp\r\n"))
	return &rawWS{t: t, conn: conn}
}

func (c *rawWS) send(op ws.OpCode, fin bool, payload string) {
	c.t.Helper()
	f := ws.NewFrame(op, fin, []byte(payload))
	f = ws.MaskFrameInPlace(f)
	if err := ws.WriteFrame(c.conn, f); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next frame from the server (which must not be masked).
func (c *rawWS) read() (ws.OpCode, []byte) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := ws.ReadHeader(c.conn)
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	if h.Masked || !h.Fin {
		c.t.Fatalf("server frame masked=%v fin=%v", h.Masked, h.Fin)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.conn, p); err != nil {
		c.t.Fatal(err)
	}
	return h.OpCode, p
}

// TestWebSocketFramesFromAHandDrivenClient checks the frame handling the SDK clients do not
// exercise: a message in fragments with a ping between them, a pong with the ping's payload,
// a client that sends after idling, the close handshake echoing the client's code, and the
// version check of the upgrade.
func TestWebSocketFramesFromAHandDrivenClient(t *testing.T) {
	g := NewWithT(t)
	h := startTestRuntime(t, func(c *config.Config) {
		c.Endpoint.Transports = []string{config.TransportStreamableHTTP, config.TransportWebSocket}
	}, []string{everythingServer(t)})

	req, _ := http.NewRequest(http.MethodGet, h.url, nil)
	req.Header = http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Version": {"8"},
		"Sec-Websocket-Key": {"AAAAAAAAAAAAAAAAAAAAAA=="}, "Sec-Websocket-Protocol": {"mcp"}}
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
	g.Expect(resp.Header.Get("Sec-WebSocket-Version")).To(Equal("13"))

	c := dialRawWS(t, h.url)
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	c.send(ws.OpText, false, init[:20])
	c.send(ws.OpPing, true, "p1")
	c.send(ws.OpContinuation, false, init[20:60])
	c.send(ws.OpContinuation, true, init[60:])
	var gotPong, gotInit bool
	for !gotPong || !gotInit {
		op, p := c.read()
		switch op {
		case ws.OpPong:
			g.Expect(string(p)).To(Equal("p1"))
			gotPong = true
		case ws.OpText:
			var m map[string]any
			g.Expect(json.Unmarshal(p, &m)).To(Succeed())
			g.Expect(m).To(HaveKeyWithValue("id", BeEquivalentTo(1)))
			g.Expect(m).To(HaveKey("result"))
			gotInit = true
		default:
			t.Fatalf("unexpected frame %v %q", op, p)
		}
	}
	c.send(ws.OpText, true, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)

	time.Sleep(300 * time.Millisecond) // idle: the server waits on the socket itself
	c.send(ws.OpText, true, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_simple_text"}}`)
	op, p := c.read()
	g.Expect(op).To(Equal(ws.OpText))
	g.Expect(string(p)).To(ContainSubstring(`"id":2`))

	// A continuation without a start is a protocol error: closed with 1002.
	c.send(ws.OpContinuation, true, "x")
	op, p = c.read()
	g.Expect(op).To(Equal(ws.OpClose))
	code, _ := ws.ParseCloseFrameData(p)
	g.Expect(code).To(Equal(ws.StatusProtocolError))

	// The client's close is echoed and the connection ends.
	c2 := dialRawWS(t, h.url)
	c2.send(ws.OpClose, true, string(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")))
	op, p = c2.read()
	g.Expect(op).To(Equal(ws.OpClose))
	code, _ = ws.ParseCloseFrameData(p)
	g.Expect(code).To(Equal(ws.StatusNormalClosure))
	_ = c2.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c2.conn.Read(make([]byte, 1))
	g.Expect(err).To(MatchError(io.EOF), "the server hangs up after the close handshake")
}

// A peer that floods pings and reads nothing must not make the runtime hold a goroutine
// (and a payload) per ping: only the latest ping is answered once the previous pong is out.
func TestWebSocketPingFloodCostsOneWriter(t *testing.T) {
	g := NewWithT(t)
	h := startTestRuntime(t, func(c *config.Config) {
		c.Endpoint.Transports = []string{config.TransportStreamableHTTP, config.TransportWebSocket}
	}, []string{everythingServer(t)})
	c := dialRawWS(t, h.url)
	before := runtime.NumGoroutine()

	// 100,000 pings of 125 bytes: far more pong bytes than the loopback buffers hold, so
	// the pongs back up on a client that never reads.
	var flood bytes.Buffer
	ping := ws.MaskFrameInPlace(ws.NewFrame(ws.OpPing, true, bytes.Repeat([]byte("p"), 125)))
	for range 100_000 {
		g.Expect(ws.WriteFrame(&flood, ping)).To(Succeed())
	}
	written := make(chan error, 1)
	go func() {
		_ = c.conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
		_, err := c.conn.Write(flood.Bytes())
		written <- err
	}()
	peak := 0
	deadline := time.After(20 * time.Second)
	for done := false; !done; {
		select {
		case err := <-written:
			g.Expect(err).NotTo(HaveOccurred(), "the runtime keeps reading while its pongs back up")
			done = true
		case <-deadline:
			t.Fatal("the flood was not read within 20 s")
		case <-time.After(5 * time.Millisecond):
		}
		peak = max(peak, runtime.NumGoroutine())
	}
	time.Sleep(200 * time.Millisecond)
	peak = max(peak, runtime.NumGoroutine())
	g.Expect(peak-before).To(BeNumerically("<", 50), "goroutines: %d before the flood, a peak of %d during it", before, peak)
}

// A frame header that declares a large payload costs memory only as the payload arrives.
func TestAFrameDeclaredLargeIsNotAllocatedBeforeItArrives(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readPayload(strings.NewReader("ten bytes!"), 1<<20)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a short payload: want io.ErrUnexpectedEOF, got %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
		t.Fatalf("reading 10 bytes of a frame declared 1 MiB allocated %d bytes", grew)
	}
	p, err := readPayload(strings.NewReader(strings.Repeat("x", 100<<10)), 100<<10)
	if err != nil || len(p) != 100<<10 {
		t.Fatalf("a whole large payload: got %d bytes, %v", len(p), err)
	}
}
