// Command client connects the official MCP Go SDK client to an MCP server behind
// mcp-runtime: TLS verified against a CA file, a bearer token, Streamable HTTP. It lists the
// tools and calls one.
//
//	go run ./examples/client -url https://everything-stdio.demo.svc.cluster.local:8443/mcp \
//	  -ca ca.crt -token "$(mcp-runtime token --server everything-stdio -n demo)"
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", "", "The server's MCP endpoint (https://…/mcp).")
	caFile := flag.String("ca", "", "PEM file of the CA that issued the server's certificate.")
	token := flag.String("token", os.Getenv("MCP_TOKEN"), "Bearer token (default $MCP_TOKEN).")
	tool := flag.String("tool", "test_simple_text", "Tool to call with empty arguments.")
	flag.Parse()
	if *url == "" || *caFile == "" || *token == "" {
		return errors.New("-url, -ca and -token are required")
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("-ca %s holds no PEM certificate", *caFile)
	}
	httpClient := &http.Client{Transport: bearer{token: *token, base: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}}}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "mcp-fleet-example", Version: "1"}, nil)
	sess, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: *url, HTTPClient: httpClient}, nil)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", *url, err)
	}
	defer func() { _ = sess.Close() }()

	init := sess.InitializeResult()
	fmt.Printf("connected to %s %s (protocol %s)\n", init.ServerInfo.Name, init.ServerInfo.Version, init.ProtocolVersion)
	list, err := sess.ListTools(ctx, nil)
	if err != nil {
		return fmt.Errorf("tools/list: %w", err)
	}
	fmt.Printf("%d tools:", len(list.Tools))
	for _, t := range list.Tools {
		fmt.Printf(" %s", t.Name)
	}
	fmt.Println()
	res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: *tool, Arguments: map[string]any{}})
	if err != nil {
		return fmt.Errorf("tools/call %s: %w", *tool, err)
	}
	out, _ := json.Marshal(res.Content)
	fmt.Printf("tools/call %s: isError=%v content=%s\n", *tool, res.IsError, out)
	if res.IsError {
		return fmt.Errorf("tool %s reported an error", *tool)
	}
	return nil
}

// bearer adds the Authorization header to every request.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}
