package tools

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"
	"golang.org/x/time/rate"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
)

// Tool definitions shaped like the ones real MCP servers list.
const (
	addTool = `{"name":"add","description":"Add two numbers","inputSchema":{"type":"object","properties":{"a":{"type":"number","description":"first"},"b":{"type":"number"}},"required":["a","b"],"additionalProperties":false}}`

	issueTool = `{"name":"create_issue","title":"Create issue","inputSchema":{"type":"object","properties":{
		"repo":{"type":"object","properties":{"owner":{"type":"string","minLength":1},"name":{"type":"string"}},"required":["owner","name"]},
		"title":{"type":"string","maxLength":80},
		"labels":{"type":"array","items":{"type":"string"},"uniqueItems":true},
		"priority":{"type":"string","enum":["low","medium","high"]}},
		"required":["repo","title"]},"annotations":{"destructiveHint":false}}`

	// Draft-07, as many TypeScript servers emit it (zod-to-json-schema): definitions + $ref,
	// tuple-form items (not valid 2020-12), format asserted under draft-07.
	searchTool = `{"name":"search","inputSchema":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
		"definitions":{"limit":{"type":"integer","minimum":1,"maximum":100}},
		"properties":{"query":{"type":"string","minLength":1},"limit":{"$ref":"#/definitions/limit"},
			"range":{"type":"array","items":[{"type":"string"},{"type":"number"}]},
			"email":{"type":"string","format":"email"}},
		"required":["query"],"additionalProperties":false}}`

	timeTool = `{"name":"get_time"}`

	// A pattern RE2 cannot compile (look-ahead): asserted by the ECMA-262 engine.
	slugTool = `{"name":"slug","inputSchema":{"type":"object","properties":{"s":{"type":"string","pattern":"^(?!-)[a-z-]+$"},"n":{"type":"integer"}}}}`
	// One that backtracks exponentially on a near miss: refused (by the match timeout if not sooner).
	backtrackTool = `{"name":"backtrack","inputSchema":{"type":"object","properties":{"s":{"type":"string","pattern":"^(?=a)(a+)+$"}}}}`
	// One neither engine compiles: the schema does not compile, so the tool is not callable.
	badPatternTool = `{"name":"bad_pattern","inputSchema":{"type":"object","properties":{"s":{"type":"string","pattern":"(?<=a"}}}}`

	deleteTool = `{"name":"delete_everything","inputSchema":{"type":"object"}}`
	adminTool  = `{"name":"admin_reset","inputSchema":{"type":"object"}}`
)

func listResult(tools ...string) json.RawMessage {
	return json.RawMessage(`{"tools":[` + strings.Join(tools, ",") + `],"nextCursor":"c2","_meta":{"k":1}}`)
}

func newPolicy(t *testing.T, cfg config.Tools, tools ...string) *Policy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(tools) > 0 {
		if _, err := p.FilterList(listResult(tools...)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func call(name, args string) json.RawMessage {
	if args == "" {
		return json.RawMessage(fmt.Sprintf(`{"name":%q}`, name))
	}
	return json.RawMessage(fmt.Sprintf(`{"name":%q,"arguments":%s}`, name, args))
}

func TestVisible(t *testing.T) {
	cases := []struct {
		allow, deny []string
		name        string
		want        bool
	}{
		{nil, nil, "anything", true},
		{[]string{"add", "search_*"}, nil, "add", true},
		{[]string{"add", "search_*"}, nil, "search_web", true},
		{[]string{"add", "search_*"}, nil, "delete", false},
		{nil, []string{"delete_*"}, "delete_everything", false},
		{nil, []string{"delete_*"}, "add", true},
		{[]string{"*"}, []string{"admin_*"}, "admin_reset", false}, // deny wins
		{[]string{"admin_reset"}, []string{"admin_*"}, "admin_reset", false},
		{[]string{"?dd"}, nil, "add", true},
		{[]string{"fs_*"}, nil, "fs_dir/child", true}, // tool names are not paths: * crosses /
		{nil, []string{"*", "admin_*"}, "github/delete_repo", false},
		{nil, []string{"github/*"}, "github/delete_repo", false},
		{nil, []string{"*_repo"}, "github/delete_repo", false},
		{nil, []string{"github/*"}, "gitlab/delete_repo", true},
		{[]string{"[a-c]dd"}, nil, "bdd", true},
	}
	for _, tc := range cases {
		p, err := New(config.Tools{Allow: tc.allow, Deny: tc.deny})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Visible(tc.name); got != tc.want {
			t.Errorf("allow=%v deny=%v Visible(%q) = %v, want %v", tc.allow, tc.deny, tc.name, got, tc.want)
		}
	}
}

func TestNewRefusesMalformedGlobs(t *testing.T) {
	g := NewWithT(t)
	_, err := New(config.Tools{Deny: []string{"[a-"}})
	g.Expect(err).To(MatchError(ContainSubstring(`"[a-"`)))
	_, err = New(config.Tools{Scopes: []config.ToolScopes{{Tool: "[", Scopes: []string{"x"}}}})
	g.Expect(err).To(HaveOccurred())
}

func TestFilterListDropsHiddenTools(t *testing.T) {
	g := NewWithT(t)
	p := newPolicy(t, config.Tools{Deny: []string{"delete_*", "admin_*"}})
	out, err := p.FilterList(listResult(addTool, deleteTool, timeTool, adminTool))
	g.Expect(err).NotTo(HaveOccurred())

	var got struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
		NextCursor string         `json:"nextCursor"`
		Meta       map[string]int `json:"_meta"`
	}
	g.Expect(json.Unmarshal(out, &got)).To(Succeed())
	var names []string
	for _, tl := range got.Tools {
		names = append(names, tl.Name)
	}
	g.Expect(names).To(Equal([]string{"add", "get_time"}))
	g.Expect(got.NextCursor).To(Equal("c2"))
	g.Expect(got.Meta).To(Equal(map[string]int{"k": 1}))
	g.Expect(string(out)).NotTo(ContainSubstring("delete_everything"))
	g.Expect(string(out)).To(ContainSubstring(`"description":"Add two numbers"`), "visible tools relayed byte for byte")

	// A hidden tool is refused exactly like a tool that does not exist.
	_, hidden := p.CheckCall(auth.Principal{}, call("delete_everything", `{}`))
	_, missing := p.CheckCall(auth.Principal{}, call("no_such_tool", `{}`))
	g.Expect(hidden.RPC.Code).To(Equal(jsonrpc.CodeInvalidParams))
	g.Expect(hidden.RPC.Message).To(Equal(`unknown tool "delete_everything"`))
	g.Expect(missing.RPC.Message).To(Equal(`unknown tool "no_such_tool"`))
	g.Expect(hidden.SchemaUnknown).To(BeFalse(), "a hidden tool never asks for a refresh")
	g.Expect(missing.SchemaUnknown).To(BeTrue())

	// A second spelling of "tools" would reach a Go client unfiltered (it reads the last).
	for _, bad := range []string{`[]`, `{"tools":{}}`, `{"nextCursor":"x"}`, `{"tools":[],"tools":[]}`, `nope`,
		`{"tools":[],"Tools":[` + deleteTool + `]}`} {
		_, err := p.FilterList(json.RawMessage(bad))
		g.Expect(err).To(HaveOccurred(), bad)
	}
}

func TestFilterListDropsAmbiguousToolEntries(t *testing.T) {
	g := NewWithT(t)
	p := newPolicy(t, config.Tools{Deny: []string{"secret"}})
	out, err := p.FilterList(listResult(`{"name":"ok","Name":"secret"}`, `{"name":7}`, `{"title":"no name"}`, timeTool))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(out)).To(Equal(`{"tools":[` + timeTool + `],"nextCursor":"c2","_meta":{"k":1}}`))
}

func TestCheckCallArguments(t *testing.T) {
	p := newPolicy(t, config.Tools{}, addTool, issueTool, searchTool, timeTool, slugTool, backtrackTool, badPatternTool)
	_, err := p.FilterList(listResult(
		// No $schema: 2020-12, where items is one schema and tuples use prefixItems.
		`{"name":"tuple2020","inputSchema":{"type":"object","properties":{"r":{"type":"array","prefixItems":[{"type":"string"}]}}}}`,
		`{"name":"tuple2020_old_form","inputSchema":{"type":"object","properties":{"r":{"type":"array","items":[{"type":"string"}]}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, tool, args string
		wantMsg          string // "" = accepted; else exact message or substring (prefix ~)
	}{
		{"add ok", "add", `{"a":1,"b":2.5}`, ""},
		{"add wrong type", "add", `{"a":"1","b":2}`, `invalid arguments for tool "add": at /a: got string, want number (keyword "type")`},
		{"add missing b", "add", `{"a":1}`, `~at (root): missing property 'b'`},
		{"add extra property", "add", `{"a":1,"b":2,"c":3}`, `~additional properties 'c' not allowed`},
		{"add arguments absent", "add", ``, `~missing properties 'a', 'b'`},
		{"add arguments array", "add", `[1,2]`, `invalid arguments for tool "add": "arguments" must be an object`},
		{"add duplicate key", "add", `{"a":1,"a":"x","b":2}`, `invalid arguments for tool "add": at /a: duplicate key`},
		{"add case variant key", "add", `{"a":1,"b":2,"B":"x"}`, `~at /B: key "B" differs from key "b" only in letter case`},
		{"add huge number ok", "add", `{"a":1e400,"b":-0.0}`, ""},
		{"issue ok", "create_issue", `{"repo":{"owner":"o","name":"n"},"title":"t","labels":["bug","ui"],"priority":"high"}`, ""},
		{"issue nested missing", "create_issue", `{"repo":{"owner":"o"},"title":"t"}`, `~at /repo: missing property 'name'`},
		{"issue nested type", "create_issue", `{"repo":{"owner":"","name":"n"},"title":"t"}`, `~at /repo/owner: minLength: got 0, want 1`},
		{"issue enum", "create_issue", `{"repo":{"owner":"o","name":"n"},"title":"t","priority":"urgent"}`, `~at /priority: value must be one of 'low', 'medium', 'high'`},
		{"issue unique items", "create_issue", `{"repo":{"owner":"o","name":"n"},"title":"t","labels":["a","a"]}`, `~at /labels:`},
		{"draft7 ok", "search", `{"query":"mcp","limit":10,"range":["a",1],"email":"a@example.com"}`, ""},
		{"draft7 ref maximum", "search", `{"query":"mcp","limit":500}`, `~at /limit: maximum: got 500, want 100`},
		{"draft7 tuple items", "search", `{"query":"q","range":[1,"a"]}`, `~at /range/0: got number, want string`},
		{"draft7 format asserted", "search", `{"query":"q","email":"not-an-email"}`, `~at /email:`},
		{"2020-12 prefixItems", "tuple2020", `{"r":[1]}`, `~at /r/0: got number, want string`},
		{"2020-12 by default", "tuple2020_old_form", `{"r":["a"]}`, `!`},
		{"no schema means object", "get_time", ``, ""},
		{"no schema still object", "get_time", `{"tz":"UTC"}`, ""},
		{"look-ahead pattern asserted", "slug", `{"s":"-abc"}`, `~at /s: '-abc' does not match pattern`},
		{"look-ahead pattern matches", "slug", `{"s":"abc-d"}`, ""},
		{"backtracking pattern matches", "backtrack", `{"s":"aaaa"}`, ""},
		{"backtracking pattern near miss refused", "backtrack", `{"s":"` + strings.Repeat("a", 40) + `!"}`, `~at /s:`},
		{"pattern no engine compiles", "bad_pattern", `{"s":"a"}`, `!`},
		{"other keywords of that tool still checked", "slug", `{"s":"x","n":1.5}`, `~at /n: got number, want integer`},
		{"pointer escaping", "create_issue", `{"repo":{"owner":"o","name":"n"},"title":"t","labels":{"a/b":1}}`, `~at /labels: got object, want array`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			tool, cerr := p.CheckCall(auth.Principal{}, call(tc.tool, tc.args))
			g.Expect(tool).To(Equal(tc.tool))
			if tc.wantMsg == "" {
				g.Expect(cerr).To(BeNil())
				return
			}
			g.Expect(cerr).NotTo(BeNil())
			if tc.wantMsg == "!" { // schema refused at compile time
				g.Expect(cerr.RPC.Code).To(Equal(jsonrpc.CodeInternalError))
				g.Expect(cerr.RPC.Message).To(ContainSubstring("is not valid against metaschema"))
				return
			}
			g.Expect(cerr.RPC.Code).To(Equal(jsonrpc.CodeInvalidParams))
			if sub, ok := strings.CutPrefix(tc.wantMsg, "~"); ok {
				g.Expect(cerr.RPC.Message).To(HavePrefix(fmt.Sprintf("invalid arguments for tool %q: ", tc.tool)))
				g.Expect(cerr.RPC.Message).To(ContainSubstring(sub))
			} else {
				g.Expect(cerr.RPC.Message).To(Equal(tc.wantMsg))
			}
			g.Expect(cerr.InsufficientScope || cerr.SchemaUnknown).To(BeFalse())
		})
	}
}

// A key that differs from a declared property only in letter case is one more allowed
// property to JSON Schema, so the declared property's constraints never run; a Go upstream
// decoding into a struct reads it as the declared property. Such keys are refused where the
// schema declares the property, through $ref, allOf, if/then and items, and left alone
// where the schema names no properties (a free-form map).
func TestCaseVariantsOfDeclaredPropertiesAreRefused(t *testing.T) {
	p := newPolicy(t, config.Tools{},
		`{"name":"read_file","inputSchema":{"type":"object","properties":{"path":{"type":"string","pattern":"^/srv/safe/"},"limit":{"type":"integer","maximum":100},"kind":{"enum":["text"]}}}}`,
		`{"name":"nested","inputSchema":{"type":"object","$defs":{"opts":{"type":"object","properties":{"depth":{"type":"integer","maximum":3}}}},`+
			`"properties":{"opts":{"$ref":"#/$defs/opts"},"env":{"type":"object","additionalProperties":{"type":"string"}},`+
			`"rows":{"type":"array","items":{"allOf":[{"properties":{"id":{"type":"integer"}}}]}}},`+
			`"if":{"required":["mode"]},"then":{"properties":{"mode":{"const":"safe"}}}}}`)
	cases := []struct {
		name, tool, args string
		wantPath         string // "" = accepted
	}{
		{"declared spelling checked as before", "read_file", `{"path":"/srv/safe/a","limit":5}`, ""},
		{"lone upper-case variant", "read_file", `{"PATH":"/etc/shadow"}`, "/PATH"},
		{"mixed-case variant", "read_file", `{"path":"/srv/safe/a","Limit":1000000}`, "/Limit"},
		{"Kelvin sign folds to k", "read_file", `{"\u212aind":"binary"}`, "/\u212aind"},
		{"through $ref", "nested", `{"opts":{"Depth":9}}`, "/opts/Depth"},
		{"through items and allOf", "nested", `{"rows":[{"id":1},{"ID":2}]}`, "/rows/1/ID"},
		{"through if/then", "nested", `{"MODE":"unsafe"}`, "/MODE"},
		{"free-form map keeps any key", "nested", `{"env":{"PATH":"/usr/bin","Path":"x"}}`, "!dup"},
		{"free-form map, one spelling", "nested", `{"env":{"PATH":"/usr/bin"}}`, ""},
		{"undeclared names are not variants", "read_file", `{"paths":["/etc"]}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cerr := p.CheckArguments(auth.Principal{}, tc.tool, json.RawMessage(tc.args))
			switch tc.wantPath {
			case "":
				g.Expect(cerr).To(BeNil())
			case "!dup": // two spellings of one key in one object: DecodeStrict's refusal
				g.Expect(cerr).NotTo(BeNil())
				g.Expect(cerr.RPC.Message).To(ContainSubstring("only in letter case"))
			default:
				g.Expect(cerr).NotTo(BeNil())
				g.Expect(cerr.RPC.Code).To(Equal(jsonrpc.CodeInvalidParams))
				g.Expect(cerr.RPC.Message).To(ContainSubstring("at " + tc.wantPath + ": key "))
				g.Expect(cerr.RPC.Message).To(ContainSubstring("differs from the declared property"))
				g.Expect(cerr.RPC.Data).To(HaveKeyWithValue("path", tc.wantPath))
			}
		})
	}

	// What a Go upstream would have read from the first refused call: the check guards
	// exactly that difference.
	var up struct {
		Path string `json:"path"`
	}
	NewWithT(t).Expect(json.Unmarshal([]byte(`{"PATH":"/etc/shadow"}`), &up)).To(Succeed())
	NewWithT(t).Expect(up.Path).To(Equal("/etc/shadow"))
}

func TestCheckCallMalformedParams(t *testing.T) {
	p := newPolicy(t, config.Tools{}, addTool)
	for in, want := range map[string]string{
		`{"arguments":{}}`:                        `missing "name"`,
		`{"name":""}`:                             `"name" must be a non-empty string`,
		`{"name":5}`:                              `"name" must be a non-empty string`,
		`{"name":"add","name":"delete"}`:          `duplicate member "name"`,
		`{"name":"add","NAME":"delete"}`:          `keys are case-sensitive`,
		`{"name":"add","Arguments":{"a":"x"}}`:    `keys are case-sensitive`,
		`["add"]`:                                 `invalid tools/call params`,
		`{"name":"add","arguments":{"a":1,"b":2}`: `invalid tools/call params`,
		``: `missing params`,
	} {
		_, cerr := p.CheckCall(auth.Principal{}, json.RawMessage(in))
		if cerr == nil || cerr.RPC.Code != jsonrpc.CodeInvalidParams || !strings.Contains(cerr.RPC.Message, want) {
			t.Errorf("%s: got %v, want -32602 containing %q", in, cerr, want)
		}
	}
}

// TestReadCallParamsNameAsEncodingJSON holds the fast path for plain names to what
// encoding/json decodes (escapes, invalid UTF-8 as U+FFFD), and keeps the arguments as
// received.
func TestReadCallParamsNameAsEncodingJSON(t *testing.T) {
	g := NewWithT(t)
	for _, raw := range []string{`"add"`, `"a\"b"`, `"caf\u00e9"`, `"café"`, `"\ud83d\ude00"`, `"tab\tname"`,
		"\"bad\xffutf8\"", `"a/b<c>&"`, `" "`} {
		var want string
		g.Expect(json.Unmarshal([]byte(raw), &want)).To(Succeed(), raw)
		name, args, cerr := ReadCallParams(json.RawMessage(`{"name":` + raw + `,"arguments":null}`))
		g.Expect(cerr).To(BeNil(), raw)
		g.Expect(name).To(Equal(want), raw)
		g.Expect(string(args)).To(Equal("null"), "arguments are kept as received")
	}
	name, args, cerr := ReadCallParams(json.RawMessage(`{"name":"add"}`))
	g.Expect(cerr).To(BeNil())
	g.Expect(name).To(Equal("add"))
	g.Expect(args).To(BeNil())
}

func TestScopes(t *testing.T) {
	g := NewWithT(t)
	p := newPolicy(t, config.Tools{Scopes: []config.ToolScopes{
		{Tool: "create_*", Scopes: []string{"issues:write"}},
		{Tool: "*", Scopes: []string{"mcp:tools"}},
	}}, addTool, issueTool)
	args := `{"repo":{"owner":"o","name":"n"},"title":"t"}`

	_, cerr := p.CheckCall(auth.Principal{Subject: "u", Scopes: []string{"mcp:tools", "issues:write"}}, call("create_issue", args))
	g.Expect(cerr).To(BeNil())

	_, cerr = p.CheckCall(auth.Principal{Subject: "u", Scopes: []string{"mcp:tools"}}, call("create_issue", args))
	g.Expect(cerr).NotTo(BeNil())
	g.Expect(cerr.InsufficientScope).To(BeTrue())
	g.Expect(cerr.MissingScopes).To(Equal([]string{"issues:write"}))
	g.Expect(cerr.RPC.Message).To(Equal(`insufficient scope for tool "create_issue": missing scope "issues:write"`))
	g.Expect(errors.Is(cerr, auth.ErrInsufficientScope)).To(BeTrue())

	_, cerr = p.CheckCall(auth.Principal{Subject: "u"}, call("create_issue", args))
	g.Expect(cerr.MissingScopes).To(ConsistOf("issues:write", "mcp:tools"))

	// Only matching globs count.
	_, cerr = p.CheckCall(auth.Principal{Scopes: []string{"mcp:tools"}}, call("add", `{"a":1,"b":2}`))
	g.Expect(cerr).To(BeNil())
	g.Expect(p.RequiredScopes("add")).To(Equal([]string{"mcp:tools"}))
}

func TestRequiredScopesOfNamesWithSlash(t *testing.T) {
	p, err := New(config.Tools{Scopes: []config.ToolScopes{
		{Tool: "admin_*", Scopes: []string{"admin"}},
		{Tool: "github/*", Scopes: []string{"repo"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		want []string
	}{
		{"admin_x/drop", []string{"admin"}},
		{"github/delete_repo", []string{"repo"}},
		{"gitlab/delete_repo", nil},
	}
	for _, tc := range cases {
		if got := p.RequiredScopes(tc.name); !slices.Equal(got, tc.want) {
			t.Errorf("RequiredScopes(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSchemaUnknownAndCacheLifecycle(t *testing.T) {
	g := NewWithT(t)
	p := newPolicy(t, config.Tools{})
	g.Expect(p.HasSchemas()).To(BeFalse())
	_, cerr := p.CheckCall(auth.Principal{}, call("add", `{"a":1,"b":2}`))
	g.Expect(cerr.SchemaUnknown).To(BeTrue())
	g.Expect(errors.Is(cerr, ErrSchemaUnknown)).To(BeTrue())

	// Pages merge: page 1 lists add, page 2 lists search; both are known afterwards.
	_, err := p.FilterList(listResult(addTool))
	g.Expect(err).NotTo(HaveOccurred())
	_, err = p.FilterList(json.RawMessage(`{"tools":[` + searchTool + `]}`))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.HasSchemas()).To(BeTrue())
	_, cerr = p.CheckCall(auth.Principal{}, call("add", `{"a":1,"b":2}`))
	g.Expect(cerr).To(BeNil())
	_, cerr = p.CheckCall(auth.Principal{}, call("search", `{"query":"x"}`))
	g.Expect(cerr).To(BeNil())

	// An unchanged schema is not recompiled; a changed one is.
	before := (*p.schemas.Load())["add"]
	_, _ = p.FilterList(listResult(addTool))
	g.Expect((*p.schemas.Load())["add"]).To(BeIdenticalTo(before))
	_, _ = p.FilterList(listResult(`{"name":"add","inputSchema":{"type":"object","properties":{"a":{"type":"string"}}}}`))
	_, cerr = p.CheckCall(auth.Principal{}, call("add", `{"a":"now a string"}`))
	g.Expect(cerr).To(BeNil())

	// list_changed: everything is unknown again until the next list.
	p.Invalidate()
	g.Expect(p.HasSchemas()).To(BeFalse())
	_, cerr = p.CheckCall(auth.Principal{}, call("search", `{"query":"x"}`))
	g.Expect(cerr.SchemaUnknown).To(BeTrue())
	g.Expect(cerr.RPC.Message).To(Equal(`unknown tool "search"`))

	// A list sent before that list_changed and answered after it filters as usual but
	// does not cache the schemas it carries: they may be the ones the change replaced.
	sent := p.Generation()
	p.Invalidate()
	out, err := p.FilterListAt(listResult(searchTool, adminTool), sent)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(out)).To(ContainSubstring(`"search"`))
	g.Expect(p.HasSchemas()).To(BeFalse())
	_, err = p.FilterListAt(listResult(searchTool), p.Generation())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.HasSchemas()).To(BeTrue(), "a list sent after it caches as usual")
}

func TestSkipArgumentValidation(t *testing.T) {
	g := NewWithT(t)
	p := newPolicy(t, config.Tools{SkipArgumentValidation: true, Deny: []string{"delete_*"}})
	_, cerr := p.CheckCall(auth.Principal{}, call("add", `{"a":"not a number"}`))
	g.Expect(cerr).To(BeNil(), "no schema needed")
	_, cerr = p.CheckCall(auth.Principal{}, call("delete_everything", `{}`))
	g.Expect(cerr).NotTo(BeNil(), "the policy still applies")
}

// A schema naming URLs (or files) must not make the runtime fetch anything; the tool's
// calls are refused instead.
func TestRemoteReferencesAreNeverFetched(t *testing.T) {
	g := NewWithT(t)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"type":"string"}`))
	}))
	defer srv.Close()

	p := newPolicy(t, config.Tools{},
		`{"name":"remote_ref","inputSchema":{"type":"object","properties":{"x":{"$ref":"`+srv.URL+`/x.json"}}}}`,
		`{"name":"remote_meta","inputSchema":{"$schema":"`+srv.URL+`/meta.json","type":"object"}}`,
		`{"name":"remote_id","inputSchema":{"$id":"`+srv.URL+`/base/","type":"object","properties":{"x":{"$ref":"rel.json"}}}}`,
		`{"name":"dynamic","inputSchema":{"type":"object","properties":{"x":{"$dynamicRef":"`+srv.URL+`/d.json#meta"}}}}`,
		`{"name":"file_ref","inputSchema":{"type":"object","properties":{"x":{"$ref":"file:///etc/passwd"}}}}`,
		`{"name":"relative_ref","inputSchema":{"type":"object","properties":{"x":{"$ref":"other.json"}}}}`,
		`{"name":"local_ref","inputSchema":{"type":"object","$defs":{"n":{"type":"number"}},"properties":{"x":{"$ref":"#/$defs/n"}}}}`,
	)
	for _, name := range []string{"remote_ref", "remote_meta", "remote_id", "dynamic", "file_ref", "relative_ref"} {
		_, cerr := p.CheckCall(auth.Principal{}, call(name, `{"x":"v"}`))
		g.Expect(cerr).NotTo(BeNil(), name)
		g.Expect(cerr.RPC.Code).To(Equal(jsonrpc.CodeInternalError), name)
		g.Expect(cerr.RPC.Message).To(ContainSubstring("refused its inputSchema"), name)
	}
	_, cerr := p.CheckCall(auth.Principal{}, call("local_ref", `{"x":"v"}`))
	g.Expect(cerr.RPC.Message).To(ContainSubstring("at /x: got string, want number"))
	g.Expect(cerr.RPC.Data).To(Equal(map[string]any{"tool": "local_ref", "path": "/x", "keyword": "type"}))
	_, cerr = p.CheckCall(auth.Principal{}, call("local_ref", `{"x":1}`))
	g.Expect(cerr).To(BeNil())
	g.Expect(hits.Load()).To(BeZero(), "the schema compiler fetched a URL")
}

func TestSchemaBounds(t *testing.T) {
	g := NewWithT(t)
	big := `{"name":"big","inputSchema":{"type":"object","description":"` + strings.Repeat("x", MaxSchemaBytes) + `"}}`
	deep := `{"name":"deep","inputSchema":` + strings.Repeat(`{"not":`, MaxSchemaDepth) + `{}` + strings.Repeat(`}`, MaxSchemaDepth) + `}`
	p := newPolicy(t, config.Tools{}, big, deep)
	for _, name := range []string{"big", "deep"} {
		_, cerr := p.CheckCall(auth.Principal{}, call(name, `{}`))
		g.Expect(cerr).NotTo(BeNil(), name)
		g.Expect(cerr.RPC.Message).To(ContainSubstring("refused its inputSchema"), name)
	}

	// The cache is bounded: tools past MaxTools are refused, not cached without end.
	var many []string
	for i := range MaxTools + 1 {
		many = append(many, fmt.Sprintf(`{"name":"t%d","inputSchema":{"type":"object"}}`, i))
	}
	p = newPolicy(t, config.Tools{}, many...)
	g.Expect(*p.schemas.Load()).To(HaveLen(MaxTools + 1))
	refused := 0
	for i := range MaxTools + 1 {
		if _, cerr := p.CheckCall(auth.Principal{}, call(fmt.Sprintf("t%d", i), `{}`)); cerr != nil {
			g.Expect(cerr.RPC.Message).To(ContainSubstring("more than"))
			refused++
		}
	}
	g.Expect(refused).To(Equal(1))
}

func TestLongMessagesAreTruncated(t *testing.T) {
	g := NewWithT(t)
	enum := make([]string, 400)
	for i := range enum {
		enum[i] = fmt.Sprintf(`"välue-%03d"`, i)
	}
	p := newPolicy(t, config.Tools{}, `{"name":"e","inputSchema":{"type":"object","properties":{"v":{"enum":[`+strings.Join(enum, ",")+`]}}}}`)
	_, cerr := p.CheckCall(auth.Principal{}, call("e", `{"v":"nope"}`))
	g.Expect(cerr).NotTo(BeNil())
	g.Expect(len(cerr.RPC.Message)).To(BeNumerically("<=", maxMessage+len("…")))
	g.Expect(json.Valid(jsonrpc.ErrorResponse(json.RawMessage(`1`), cerr.RPC))).To(BeTrue())
}

// A small schema whose anyOf branches $ref the same definition at every level needs 2^n
// evaluations per value; it is refused at compile time. Recursive schemas stay usable.
func TestCostlySchemasAreRefused(t *testing.T) {
	g := NewWithT(t)
	chain := func(n int) string {
		var defs []string
		for i := range n {
			defs = append(defs, fmt.Sprintf(`"l%d":{"anyOf":[{"$ref":"#/$defs/l%d","minLength":5},{"$ref":"#/$defs/l%d","maxLength":2}]}`, i, i+1, i+1))
		}
		defs = append(defs, fmt.Sprintf(`"l%d":{"type":"string"}`, n))
		return `{"type":"object","properties":{"s":{"$ref":"#/$defs/l0"}},"$defs":{` + strings.Join(defs, ",") + `}}`
	}
	p := newPolicy(t, config.Tools{},
		`{"name":"chain8","inputSchema":`+chain(8)+`}`,
		`{"name":"chain30","inputSchema":`+chain(30)+`}`,
		`{"name":"tree","inputSchema":{"type":"object","properties":{"node":{"$ref":"#/$defs/node"}},"$defs":{"node":{"type":"object","properties":{"value":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["value"]}}}}`,
		`{"name":"json_value","inputSchema":{"type":"object","properties":{"v":{"$ref":"#/$defs/v"}},"$defs":{"v":{"anyOf":[{"type":"object","additionalProperties":{"$ref":"#/$defs/v"}},{"type":"array","items":{"$ref":"#/$defs/v"}},{"type":["string","number","boolean","null"]}]}}}}`,
	)
	_, cerr := p.CheckCall(auth.Principal{}, call("chain8", `{"s":"abc"}`))
	g.Expect(cerr).NotTo(BeNil())
	g.Expect(cerr.RPC.Code).To(Equal(jsonrpc.CodeInvalidParams), "chain8 compiles and validates")

	_, cerr = p.CheckCall(auth.Principal{}, call("chain30", `{"s":"abc"}`))
	g.Expect(cerr).NotTo(BeNil())
	g.Expect(cerr.RPC.Code).To(Equal(jsonrpc.CodeInternalError))
	g.Expect(cerr.RPC.Message).To(ContainSubstring("too costly to validate"))

	_, cerr = p.CheckCall(auth.Principal{}, call("tree", `{"node":{"value":"a","children":[{"value":"b","children":[{"value":"c"}]}]}}`))
	g.Expect(cerr).To(BeNil())
	_, cerr = p.CheckCall(auth.Principal{}, call("tree", `{"node":{"value":"a","children":[{"children":[]}]}}`))
	g.Expect(cerr.RPC.Message).To(ContainSubstring("at /node/children/0: missing property 'value'"))
	_, cerr = p.CheckCall(auth.Principal{}, call("json_value", `{"v":{"a":[1,{"b":null}]}}`))
	g.Expect(cerr).To(BeNil())
}

// The backtracking engine has a runtime-wide CPU budget: once it is spent, values that
// need it are refused (not let through) until it refills.
func TestBacktrackingBudgetFailsClosed(t *testing.T) {
	g := NewWithT(t)
	defer func(l *rate.Limiter) { backtracking = l }(backtracking)
	backtracking = rate.NewLimiter(rate.Limit(1), 1) // one microsecond per second
	p := newPolicy(t, config.Tools{}, slugTool)
	_, cerr := p.CheckCall(auth.Principal{}, call("slug", `{"s":"abc"}`))
	g.Expect(cerr).To(BeNil(), "the first match fits the budget")
	_, cerr = p.CheckCall(auth.Principal{}, call("slug", `{"s":"abc"}`))
	g.Expect(cerr).NotTo(BeNil(), "the budget is spent")
	g.Expect(cerr.RPC.Message).To(ContainSubstring("does not match pattern"))
	_, cerr = p.CheckCall(auth.Principal{}, call("slug", `{"n":1}`))
	g.Expect(cerr).To(BeNil(), "values without such a pattern are not affected")
}
