package upstream

import (
	"strings"
	"testing"
	"time"
)

// idLastServer answers like the TypeScript SDK serializes responses: {"result":…,
// "jsonrpc":"2.0","id":N}; tools/list gets a large result.
var idLastServer = `big=$(head -c 8000 /dev/zero | tr '\0' 'a')
while IFS= read -r line; do
  id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
  [ -z "$id" ] && continue
  case "$line" in
  *'"method":"initialize"'*) printf '{"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"1"}},"jsonrpc":"2.0","id":%s}\n' "$id" ;;
  *'"method":"tools/list"'*) printf '{"result":{"tools":[],"pad":"%s"},"jsonrpc":"2.0","id":%s}\n' "$big" "$id" ;;
  *) printf '{"result":{},"jsonrpc":"2.0","id":%s}\n' "$id" ;;
  esac
done`

// An over-long response is dropped and the request it answers gets its error at once,
// also when the server writes the id last, as the TypeScript SDK does (before, it waited
// for the request timeout, 10 s here).
func TestAnOversizedResponseWithItsIDLastIsAnsweredPromptly(t *testing.T) {
	opts := testOptions()
	opts.MaxMessageBytes = 1024
	u, err := NewStdio(testConfig(), []string{"/bin/sh", "-c", idLastServer}, opts)
	if err != nil {
		t.Fatal(err)
	}
	startUpstream(t, u)
	c := newClient(t, u)
	start := time.Now()
	c.send(`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if m := c.find(responseTo(`7`)); m != nil {
			if !strings.Contains(string(m), "1024-byte") {
				t.Fatalf("unexpected answer %s", m)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no answer to the over-long response's request within %s (it comes only at the 10 s request timeout)", time.Since(start).Round(time.Millisecond))
}

// With room for the response it arrives at once (the fake server works).
func TestAnIDLastServerIsAnswered(t *testing.T) {
	u, err := NewStdio(testConfig(), []string{"/bin/sh", "-c", idLastServer}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	startUpstream(t, u)
	c := newClient(t, u)
	c.send(`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`)
	c.await(responseTo(`7`), 3*time.Second)
}
