package tools

import (
	"encoding/json"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// A tool shaped like SEP-2243's examples: a top-level and a nested mirrored argument of
// each mirrorable type.
const deployTool = `{"name":"deploy","inputSchema":{"type":"object","properties":{
	"anything":true,
	"region":{"type":"string","x-mcp-header":"Region"},
	"dryRun":{"type":"boolean","x-mcp-header":"Dry-Run"},
	"target":{"type":"object","properties":{"replicas":{"type":"integer","x-mcp-header":"Replicas"},"note":{"type":"string"}}},
	"note":{"type":"string","x-mcp-header":""}}}}`

func TestParamHeadersAreReadFromNestedProperties(t *testing.T) {
	g := NewWithT(t)
	var tool struct {
		InputSchema json.RawMessage `json:"inputSchema"`
	}
	g.Expect(json.Unmarshal([]byte(deployTool), &tool)).To(Succeed())
	g.Expect(paramHeaders(tool.InputSchema)).To(ConsistOf(
		ParamHeader{Name: "Region", Path: []string{"region"}},
		ParamHeader{Name: "Dry-Run", Path: []string{"dryRun"}},
		ParamHeader{Name: "Replicas", Path: []string{"target", "replicas"}},
	), "an empty annotation is no header; a boolean subschema hides nothing")
	g.Expect(paramHeaders([]byte(`{"type":"object"}`))).To(BeEmpty())
	g.Expect(paramHeaders([]byte(`[1]`))).To(BeEmpty())
}

func TestCheckParamHeaders(t *testing.T) {
	p := newPolicy(t, config.Tools{}, deployTool, addTool)
	for _, tc := range []struct {
		name, args string
		header     http.Header
		wantErr    string // "" accepted
	}{
		{"all mirrored", `{"region":"us-west1","dryRun":true,"target":{"replicas":3}}`,
			http.Header{"Mcp-Param-Region": {"us-west1"}, "Mcp-Param-Dry-Run": {"true"}, "Mcp-Param-Replicas": {"3"}}, ""},
		{"nothing annotated present", `{"other":1}`, http.Header{}, ""},
		{"null is absent", `{"region":null}`, http.Header{}, ""},
		{"Base64 wrapped", `{"region":"Zürich"}`, http.Header{"Mcp-Param-Region": {"=?base64?WsO8cmljaA==?="}}, ""},
		{"integer written as a float", `{"target":{"replicas":3}}`, http.Header{"Mcp-Param-Replicas": {"3.0"}}, "does not match"},
		{"missing header", `{"region":"us-west1"}`, http.Header{}, "missing Mcp-Param-Region header"},
		{"different value", `{"region":"us-west1"}`, http.Header{"Mcp-Param-Region": {"eu"}}, "does not match"},
		{"case matters in values", `{"dryRun":true}`, http.Header{"Mcp-Param-Dry-Run": {"TRUE"}}, "does not match"},
		{"header without argument", `{}`, http.Header{"Mcp-Param-Region": {"us-west1"}}, "is set but argument"},
		{"nested missing", `{"target":{"replicas":2}}`, http.Header{}, `argument "target.replicas"`},
		{"unpadded Base64", `{"region":"Hello"}`, http.Header{"Mcp-Param-Region": {"=?base64?SGVsbG8?="}}, "not valid"},
		{"fraction cannot be mirrored", `{"target":{"replicas":1.5}}`, http.Header{"Mcp-Param-Replicas": {"1.5"}}, "does not match"},
		{"beyond 2^53", `{"target":{"replicas":9007199254740993}}`, http.Header{"Mcp-Param-Replicas": {"9007199254740993"}}, "does not match"},
		{"object cannot be mirrored", `{"region":{"a":1}}`, http.Header{"Mcp-Param-Region": {"x"}}, "does not match"},
		{"repeated header", `{"region":"us-west1"}`, http.Header{"Mcp-Param-Region": {"us-west1", "eu-central1"}}, "repeated"},
		{"case-variant key without header", `{"REGION":"eu-central1"}`, http.Header{}, "case-sensitive"},
		{"case-variant key beside the argument", `{"region":"us-west1","REGION":"eu-central1"}`, http.Header{"Mcp-Param-Region": {"us-west1"}}, "case-sensitive"},
		{"repeated key", `{"region":"us-west1","region":"eu-central1"}`, http.Header{"Mcp-Param-Region": {"us-west1"}}, "duplicate"},
		{"nested case variant", `{"target":{"Replicas":2}}`, http.Header{}, "case-sensitive"},
		{"leading zero", `{"target":{"replicas":42}}`, http.Header{"Mcp-Param-Replicas": {"042"}}, "does not match"},
		{"plus sign", `{"target":{"replicas":42}}`, http.Header{"Mcp-Param-Replicas": {"+42"}}, "does not match"},
		{"exponent", `{"target":{"replicas":42}}`, http.Header{"Mcp-Param-Replicas": {"4.2e1"}}, "does not match"},
		{"hex float", `{"target":{"replicas":42}}`, http.Header{"Mcp-Param-Replicas": {"0x2Ap0"}}, "does not match"},
		{"negative zero", `{"target":{"replicas":0}}`, http.Header{"Mcp-Param-Replicas": {"-0"}}, "does not match"},
		{"negative", `{"target":{"replicas":-7}}`, http.Header{"Mcp-Param-Replicas": {"-7"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			known, err := p.CheckParamHeaders("deploy", json.RawMessage(tc.args), tc.header.Values)
			g.Expect(known).To(BeTrue())
			if tc.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
			} else {
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
			}
		})
	}

	g := NewWithT(t)
	known, err := p.CheckParamHeaders("add", json.RawMessage(`{"a":1}`), http.Header{"Mcp-Param-A": {"2"}}.Values)
	g.Expect(known).To(BeTrue())
	g.Expect(err).NotTo(HaveOccurred(), "a tool without annotations has no Mcp-Param headers to check")
	known, _ = p.CheckParamHeaders("unlisted", nil, http.Header{}.Values)
	g.Expect(known).To(BeFalse())
}

// Skipping argument validation must not skip the header check: the headers are what an
// intermediary acts on.
func TestParamHeadersCheckedWithoutArgumentValidation(t *testing.T) {
	g := NewWithT(t)
	p := newPolicy(t, config.Tools{SkipArgumentValidation: true}, deployTool)
	known, err := p.CheckParamHeaders("deploy", json.RawMessage(`{"region":"us"}`), http.Header{}.Values)
	g.Expect(known).To(BeTrue())
	g.Expect(err).To(HaveOccurred())
}
