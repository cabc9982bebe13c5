package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"strings"
	"syscall"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/tokenmint"
	"github.com/mcpfleet/mcp-fleet-operator/internal/version"
)

// tokenTimeout bounds the whole exchange with the API server.
const tokenTimeout = 30 * time.Second

// token prints a JWT for an MCPServer's operator-generated issuer on stdout, and nothing
// else anywhere: errors on stderr never carry the token.
func token(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c tokenmint.Cluster
	server := fs.String("server", "", "name of the MCPServer (required)")
	fs.StringVar(&c.Namespace, "namespace", "", "namespace of the MCPServer (default: the context's namespace)")
	fs.StringVar(&c.Namespace, "n", "", "shorthand for --namespace")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	fs.StringVar(&c.Context, "context", "", "kubeconfig context (default: the current context)")
	ttl := fs.Duration("ttl", tokenmint.DefaultTTL, fmt.Sprintf("lifetime of the token, at most %s", tokenmint.MaxTTL))
	subject := fs.String("subject", defaultSubject(), `"sub" of the token: the caller the server sees, rate-limits and audits`)
	var scopes scopeList
	fs.Var(&scopes, "scopes", "comma-separated scopes to grant (spec.tools.scopes of the server); repeatable")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	usageErr := func(format string, a ...any) int {
		_, _ = fmt.Fprintf(stderr, "mcp-runtime token: "+format+"\n", a...)
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return usageErr("unexpected argument %q (name the server with --server NAME)", fs.Arg(0))
	case *server == "":
		return usageErr("--server is required: the name of the MCPServer (kubectl get mcpservers -n NAMESPACE)")
	case *subject == "":
		return usageErr("--subject must not be empty")
	}
	if err := tokenmint.CheckTTL(*ttl); err != nil {
		return usageErr("%v", err)
	}
	if err := tokenmint.CheckScopes(scopes); err != nil {
		return usageErr("%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, tokenTimeout)
	defer cancel()
	c.UserAgent = "mcp-runtime-token/" + version.Version
	issuer, err := tokenmint.Load(ctx, c, *server)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "mcp-runtime token: %v\n", err)
		return 1
	}
	tok, _, err := issuer.Mint(tokenmint.Request{Subject: *subject, Scopes: scopes, TTL: *ttl})
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "mcp-runtime token: %v\n", err)
		return 1
	}
	if _, err := fmt.Fprintln(stdout, tok); err != nil {
		_, _ = fmt.Fprintf(stderr, "mcp-runtime token: writing the token: %v\n", err)
		return 1
	}
	return 0
}

// defaultSubject is the OS user name, else "mcp-runtime-token".
func defaultSubject() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "mcp-runtime-token"
}

// scopeList collects --scopes a,b --scopes c.
type scopeList []string

func (s *scopeList) String() string { return strings.Join(*s, ",") }

func (s *scopeList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		*s = append(*s, strings.TrimSpace(p))
	}
	return nil
}
