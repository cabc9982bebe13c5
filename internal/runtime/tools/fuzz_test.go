package tools

import (
	"bytes"
	"encoding/json"
	"net/http"
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

// FuzzCheckParamHeaders: whatever the arguments and the header, an accepted call has its
// annotated argument exactly as a Go server decoding into a struct (case-insensitively,
// last key winning) would read it, and the header says the same.
func FuzzCheckParamHeaders(f *testing.F) {
	p, err := New(config.Tools{})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := p.FilterList(listResult(deployTool)); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"region":"us-west1"}`), "us-west1")
	f.Add([]byte(`{"region":"Zürich"}`), "=?base64?WsO8cmljaA==?=")
	f.Add([]byte(`{"REGION":"eu","region":"us"}`), "us")
	f.Add([]byte(`{"region":"\u0075s"}`), "us")
	f.Add([]byte(`{"regi\u006fn":"us"}`), "us")
	f.Add([]byte(`{"region":null}`), "")
	f.Fuzz(func(t *testing.T, args []byte, header string) {
		h := http.Header{}
		if header != "" {
			h.Set("Mcp-Param-Region", header)
		}
		known, err := p.CheckParamHeaders("deploy", args, h.Values)
		if !known {
			t.Fatal("deploy is listed")
		}
		if err != nil {
			return
		}
		var goServer struct {
			Region *string `json:"region"`
		}
		if json.Unmarshal(args, &goServer) != nil {
			return // the upstream refuses these arguments itself
		}
		switch {
		case goServer.Region == nil && header != "":
			t.Fatalf("accepted header %q for arguments %s without a region", header, args)
		case goServer.Region != nil && header == "":
			t.Fatalf("accepted arguments %s with region %q and no header", args, *goServer.Region)
		case goServer.Region != nil:
			if v, _ := DecodeHeaderValue(header); v != *goServer.Region {
				t.Fatalf("accepted header %q (%q) for region %q in %s", header, v, *goServer.Region, args)
			}
		}
	})
}
