package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/tools"
)

// MCP protocol revisions the runtime relays. StatelessVersion and later have no sessions.
const (
	StatelessVersion = "2026-07-28"
	legacySSEVersion = "2024-11-05"
	defaultVersion   = "2025-03-26" // assumed when a session request has no version header
)

var knownVersions = []string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", StatelessVersion}

// Header names of the Streamable HTTP transport.
const (
	hdrSessionID       = "Mcp-Session-Id"
	hdrProtocolVersion = "Mcp-Protocol-Version"
	hdrMethod          = "Mcp-Method"
	hdrName            = "Mcp-Name"
)

// metaProtocolVersion is the per-request _meta key of the stateless revision (SEP-2575).
const metaProtocolVersion = "io.modelcontextprotocol/protocolVersion"

func knownVersion(v string) bool { return slices.Contains(knownVersions, v) }

// stateless reports a protocol version of the stateless era.
func stateless(v string) bool { return v >= StatelessVersion && knownVersion(v) }

// checkStatelessHeaders enforces the header/body agreement the 2026-07-28 Streamable HTTP
// transport requires (SEP-2243, SEP-2575). The headers exist so intermediaries — this
// runtime, load balancers, rate limiters — can act without parsing the body; if they could
// disagree with the body, a request could be routed or limited as one thing and executed as
// another. So a missing or mismatched header is refused with HTTP 400 and -32020.
//
// Mcp-Param-* headers of x-mcp-header tool arguments need the tool's inputSchema: they are
// checked with the tool policy (Server.checkParamHeaders).
func checkStatelessHeaders(h http.Header, m *jsonrpc.Message) *jsonrpc.Error {
	if m.IsResponse() {
		return nil
	}
	// A repeated header could be read as its first value here and its last one elsewhere.
	for _, name := range []string{hdrMethod, hdrName, hdrProtocolVersion} {
		if len(h.Values(name)) > 1 {
			return jsonrpc.NewError(codeHeaderMismatch, name+" header is repeated")
		}
	}
	got := h.Get(hdrMethod)
	if got == "" {
		return jsonrpc.NewError(codeHeaderMismatch, "missing required Mcp-Method header")
	}
	if got != m.Method {
		return jsonrpc.NewError(codeHeaderMismatch, "Mcp-Method header does not match the body's method")
	}
	if name, field := addressedName(m); field != "" {
		hv := h.Get(hdrName)
		if hv == "" {
			return jsonrpc.NewError(codeHeaderMismatch, "missing required Mcp-Name header for "+m.Method)
		}
		decoded, ok := tools.DecodeHeaderValue(hv)
		if !ok || decoded != name {
			return jsonrpc.NewError(codeHeaderMismatch, "Mcp-Name header does not match the body's params."+field)
		}
	}
	if !m.IsRequest() {
		return nil
	}
	meta, err := member(m.Params, "_meta")
	if err != nil {
		return jsonrpc.InvalidParams("params: " + err.Error())
	}
	raw, err := member(meta, metaProtocolVersion)
	if err != nil {
		return jsonrpc.InvalidParams("params._meta: " + err.Error())
	}
	var metaVersion string
	_ = json.Unmarshal(raw, &metaVersion)
	if metaVersion == "" {
		return jsonrpc.InvalidParams("missing _meta." + metaProtocolVersion)
	}
	if metaVersion != h.Get(hdrProtocolVersion) {
		return jsonrpc.NewError(codeHeaderMismatch, "Mcp-Protocol-Version header does not match _meta."+metaProtocolVersion)
	}
	return nil
}

// addressedName returns the target a request names (params.name or params.uri) for the
// methods that must mirror it in Mcp-Name, and which field held it ("" if none applies).
func addressedName(m *jsonrpc.Message) (string, string) {
	var field string
	switch m.Method {
	case "tools/call", "prompts/get":
		field = "name"
	case "resources/read":
		field = "uri"
	default:
		return "", ""
	}
	raw, _ := member(m.Params, field) // a case variant of the field leaves the name empty: refused as a mismatch
	var v string
	_ = json.Unmarshal(raw, &v)
	return v, field
}

// member returns the value of key in the JSON object obj (nil when obj is not an object
// or has no such key), refusing an object that repeats key or has a case variant of it:
// the check must read the value a case-insensitive upstream (Go's encoding/json) will use.
func member(obj json.RawMessage, key string) (json.RawMessage, error) {
	if obj = bytes.TrimLeft(obj, " \t\r\n"); len(obj) == 0 || obj[0] != '{' {
		return nil, nil
	}
	members, err := jsonrpc.Members(obj, key)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		if m.Key == key {
			return m.Value, nil
		}
	}
	return nil, nil
}
