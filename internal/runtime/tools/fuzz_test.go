package tools

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// FuzzCheckCall checks that CheckCall never panics and that a call it lets through is read
// the same way by encoding/json (what a Go upstream uses, case-insensitive field matching
// included): same tool name, a visible tool, and arguments that pass the tool's schema.
// The seeds in testdata/fuzz/FuzzCheckCall run as a normal test.
func FuzzCheckCall(f *testing.F) {
	p, err := New(config.Tools{Deny: []string{"delete_*"}})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := p.FilterList(listResult(addTool, issueTool, searchTool, timeTool, slugTool, deleteTool)); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, params []byte) {
		name, cerr := p.CheckCall(auth.Principal{Subject: "fuzz"}, params)
		if cerr != nil {
			if cerr.RPC == nil || cerr.RPC.Message == "" {
				t.Fatalf("refusal without a JSON-RPC error: %#v", cerr)
			}
			return
		}
		var std struct {
			Name      string
			Arguments json.RawMessage
		}
		if err := json.Unmarshal(params, &std); err != nil {
			t.Fatalf("encoding/json refuses accepted params %q: %v", params, err)
		}
		if std.Name != name || !p.Visible(name) {
			t.Fatalf("accepted tool %q, encoding/json reads %q", name, std.Name)
		}
		e := (*p.schemas.Load())[name]
		args := []byte(std.Arguments)
		if len(args) == 0 || string(args) == "null" {
			args = []byte(`{}`)
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(args))
		if err != nil {
			t.Fatalf("accepted arguments %q do not decode: %v", args, err)
		}
		if err := e.schema.Validate(v); err != nil {
			t.Fatalf("accepted arguments %q fail the schema as a lenient reader sees them: %v", args, err)
		}
	})
}

func BenchmarkCheckCall(b *testing.B) {
	p, err := New(config.Tools{Deny: []string{"delete_*"}, Scopes: []config.ToolScopes{{Tool: "create_*", Scopes: []string{"issues:write"}}}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.FilterList(listResult(addTool, issueTool, searchTool, timeTool)); err != nil {
		b.Fatal(err)
	}
	pr := auth.Principal{Subject: "u", Scopes: []string{"issues:write"}}
	for name, params := range map[string]json.RawMessage{
		"add":          call("add", `{"a":1.5,"b":2}`),
		"create_issue": call("create_issue", `{"repo":{"owner":"mcpfleet","name":"operator"},"title":"Bench","labels":["bug","perf","runtime"],"priority":"high"}`),
		"refused":      call("add", `{"a":"x","b":2}`),
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, cerr := p.CheckCall(pr, params)
				if (cerr != nil) != (name == "refused") {
					b.Fatal(cerr)
				}
			}
		})
	}
}
