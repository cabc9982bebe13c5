package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// TestMain lets the test binary play a stdio MCP server for the relay: it answers
// initialize, and every other request with its method and params, after a notification.
func TestMain(m *testing.M) {
	if os.Getenv("BENCH_FAKE_STDIO_SERVER") == "1" {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			var msg struct {
				ID     json.RawMessage `json:"id"`
				Method string          `json:"method"`
				Params json.RawMessage `json:"params"`
			}
			if json.Unmarshal(in.Bytes(), &msg) != nil || msg.ID == nil {
				continue
			}
			if msg.Method == "initialize" {
				fmt.Printf(`{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","serverInfo":{"name":"fake","version":"1"}}}`+"\n", msg.ID)
				continue
			}
			fmt.Println(`{"jsonrpc":"2.0","method":"notifications/message","params":{"id":1}}`)
			fmt.Printf(`{"jsonrpc":"2.0","id":%s,"result":{"method":%q,"params":%s}}`+"\n", msg.ID, msg.Method, msg.Params)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestStdioRelay(t *testing.T) {
	g := NewWithT(t)
	t.Setenv("BENCH_FAKE_STDIO_SERVER", "1")
	self, err := os.Executable()
	g.Expect(err).NotTo(HaveOccurred())
	r, err := startRelay([]string{self})
	g.Expect(err).NotTo(HaveOccurred())
	srv := httptest.NewServer(r)
	defer srv.Close()
	post := func(body string) (int, string, http.Header) {
		resp, err := http.Post(srv.URL+"/mcp", "application/json", strings.NewReader(body))
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	code, body, h := post(`{"jsonrpc":"2.0","id":7,"method":"initialize","params":{}}`)
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(h.Get("Mcp-Session-Id")).To(Equal("bare"))
	g.Expect(body).To(Equal(`{"jsonrpc":"2.0","id":7,"result":{"protocolVersion":"2025-11-25","serverInfo":{"name":"fake","version":"1"}}}`))

	code, _, _ = post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	g.Expect(code).To(Equal(http.StatusAccepted))

	// Two clients with the same request id each get their own answer, under their id.
	for _, arg := range []string{"x", "y"} {
		code, body, _ = post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"` + arg + `"}}`)
		g.Expect(code).To(Equal(http.StatusOK))
		g.Expect(body).To(Equal(`{"jsonrpc":"2.0","id":2,"result":{"method":"tools/call","params":{"name":"` + arg + `"}}}`))
	}
}

func TestSwapID(t *testing.T) {
	g := NewWithT(t)
	out, ok := swapID([]byte(`{"jsonrpc":"2.0","id":12,"method":"m"}`), []byte("12"), []byte(`"a"`))
	g.Expect(ok).To(BeTrue())
	g.Expect(string(out)).To(Equal(`{"jsonrpc":"2.0","id":"a","method":"m"}`))
	_, ok = swapID([]byte(`{"id": 12}`), []byte("12"), []byte("1"))
	g.Expect(ok).To(BeFalse())
}
