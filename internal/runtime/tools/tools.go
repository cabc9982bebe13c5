// Package tools enforces the tool policy on MCP traffic: which tools a client may see and
// call (allow/deny globs, deny wins), which scopes a call needs, and whether its arguments
// match the tool's inputSchema as the upstream declared it in tools/list.
//
// Schemas are compiled with remote references disabled: a $ref or $schema naming a URL or a
// file the runtime does not embed makes the schema fail to compile, and the tool's calls are
// then refused (fail closed). The runtime never fetches anything a schema names.
//
// Compile cost is bounded (MaxSchemaBytes, MaxSchemaDepth, MaxTools, no recompiling of an
// unchanged schema) and so is the static validation cost (MaxSchemaCost). Not bounded: a
// recursive schema whose recursion fans out (anyOf branches that both recurse into the same
// child value) costs up to 2^depth evaluations for a value nested depth levels deep; the
// upstream's own schemas are trusted that far, and the JSON-RPC depth limit caps depth.
// Patterns Go's RE2 cannot compile (look-around, backreferences) are not asserted, rather
// than making the tool uncallable. Draft-07 schemas get format assertions (the draft's
// default in the validator library); 2020-12 ones do not.
package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/glob"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
)

// Bounds on what an upstream's tools/list can make the runtime compile and keep.
const (
	// MaxSchemaBytes is the largest inputSchema compiled; larger ones refuse the tool.
	MaxSchemaBytes = 256 << 10
	// MaxSchemaDepth is the deepest JSON nesting of an inputSchema.
	MaxSchemaDepth = 64
	// MaxSchemaCost bounds the estimated subschema evaluations per validated value (see
	// evalCost); about 2 µs each, so a call costs at most a few tens of milliseconds.
	MaxSchemaCost = 20000
	// MaxTools is the number of tool schemas cached; tools beyond it are refused.
	MaxTools = 2048
	// maxMessage bounds the length of an error message sent to a client.
	maxMessage = 1024
)

// ErrSchemaUnknown marks a call to a visible tool whose inputSchema the runtime has not seen
// (no tools/list result since start or since the last Invalidate). The server should fetch
// tools/list from the upstream, pass the result through FilterList, and call CheckCall
// again; a tool still unknown after that does not exist upstream, and the CallError's RPC
// error (-32602 unknown tool) is the answer.
var ErrSchemaUnknown = errors.New("tool input schema not known yet")

// CallError is a refused tools/call.
type CallError struct {
	// RPC is the JSON-RPC error to send to the client.
	RPC *jsonrpc.Error
	// Tool is the tool name, when it could be read.
	Tool string
	// InsufficientScope: HTTP transports answer 403 with
	// WWW-Authenticate: Bearer error="insufficient_scope", scope="<MissingScopes>".
	InsufficientScope bool
	MissingScopes     []string
	// SchemaUnknown: see ErrSchemaUnknown.
	SchemaUnknown bool
}

func (e *CallError) Error() string { return e.RPC.Message }

// Unwrap makes errors.Is work with ErrSchemaUnknown and auth.ErrInsufficientScope.
func (e *CallError) Unwrap() error {
	switch {
	case e.SchemaUnknown:
		return ErrSchemaUnknown
	case e.InsufficientScope:
		return auth.ErrInsufficientScope
	}
	return nil
}

// entry is one tool's compiled inputSchema.
type entry struct {
	raw    string // the schema as listed, to skip recompiling an unchanged schema
	schema *jsonschema.Schema
	err    error         // why the schema was refused; calls are then refused
	params []ParamHeader // x-mcp-header annotations, checked even when arguments are not
	cases  *caseGuard    // nil: the schema declares no property names
}

// Policy is safe for concurrent use. Calls read an immutable schema map through an atomic
// pointer; tools/list results build a new map under a mutex.
type Policy struct {
	allow, deny []glob.Pattern
	scopes      []scopeRule
	skipArgs    bool

	mu      sync.Mutex // serialises writers of schemas
	schemas atomic.Pointer[map[string]*entry]
	gen     atomic.Uint64 // Invalidate count (written under mu)
}

// scopeRule is one tools.scopes entry with its glob compiled.
type scopeRule struct {
	tool   glob.Pattern
	scopes []string
}

// New checks the globs and makes a Policy.
func New(cfg config.Tools) (*Policy, error) {
	compile := func(field string, globs []string) ([]glob.Pattern, error) {
		out := make([]glob.Pattern, 0, len(globs))
		for i, g := range globs {
			pat, err := glob.Compile(g)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %q: %w", field, i, g, err)
			}
			out = append(out, pat)
		}
		return out, nil
	}
	p := &Policy{skipArgs: cfg.SkipArgumentValidation}
	var err error
	if p.allow, err = compile("tools.allow", cfg.Allow); err != nil {
		return nil, err
	}
	if p.deny, err = compile("tools.deny", cfg.Deny); err != nil {
		return nil, err
	}
	for i, s := range cfg.Scopes {
		pat, err := glob.Compile(s.Tool)
		if err != nil {
			return nil, fmt.Errorf("tools.scopes[%d]: %q: %w", i, s.Tool, err)
		}
		p.scopes = append(p.scopes, scopeRule{tool: pat, scopes: slices.Clone(s.Scopes)})
	}
	p.schemas.Store(&map[string]*entry{})
	return p, nil
}

func matchAny(globs []glob.Pattern, name string) bool {
	for _, g := range globs {
		if g.Match(name) {
			return true
		}
	}
	return false
}

// Visible reports whether the policy lets clients see and call the tool: not matched by a
// deny glob, and matched by an allow glob when there are any.
func (p *Policy) Visible(name string) bool {
	if matchAny(p.deny, name) {
		return false
	}
	return len(p.allow) == 0 || matchAny(p.allow, name)
}

// RequiredScopes lists the scopes a call of the tool needs (the union over matching globs).
func (p *Policy) RequiredScopes(name string) []string {
	var out []string
	for _, s := range p.scopes {
		if s.tool.Match(name) {
			for _, sc := range s.scopes {
				if !slices.Contains(out, sc) {
					out = append(out, sc)
				}
			}
		}
	}
	return out
}

// HasSchemas reports whether any tool schema is cached.
func (p *Policy) HasSchemas() bool { return len(*p.schemas.Load()) > 0 }

// Invalidate forgets every cached schema (on notifications/tools/list_changed); the next
// call of each tool reports ErrSchemaUnknown until a tools/list result is seen.
func (p *Policy) Invalidate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.schemas.Store(&map[string]*entry{})
	p.gen.Add(1)
}

// Generation changes with every Invalidate. Read it when a tools/list is sent and give it
// to FilterListAt with the answer: an answer the server wrote before it said its tools
// changed must not cache the schemas it replaced.
func (p *Policy) Generation() uint64 { return p.gen.Load() }

// CheckCall decides a tools/call with the given params for the principal: ReadCallParams,
// then CheckArguments. It returns the tool name (when readable) and nil when the call may be
// relayed.
func (p *Policy) CheckCall(pr auth.Principal, params json.RawMessage) (string, *CallError) {
	name, args, cerr := ReadCallParams(params)
	if cerr != nil {
		return name, cerr
	}
	return name, p.CheckArguments(pr, name, args)
}

// CheckArguments decides a call of tool name with args, as ReadCallParams read them, for the
// principal; nil when the call may be relayed. Refusals, in order: arguments that are not an
// object (-32602), a hidden tool (-32602 "unknown tool", as if it did not exist), missing
// scopes (InsufficientScope), an unknown schema (SchemaUnknown), a schema the runtime
// refused (-32603), arguments not matching the schema (-32602 naming the JSON pointer and
// keyword), a key that differs from a property the schema declares there only in letter
// case (-32602, see caseGuard).
func (p *Policy) CheckArguments(pr auth.Principal, name string, args json.RawMessage) *CallError {
	switch {
	case args == nil || string(args) == "null":
		args = json.RawMessage(`{}`)
	case args[0] != '{':
		return &CallError{Tool: name, RPC: jsonrpc.InvalidParams(fmt.Sprintf(`invalid arguments for tool %q: "arguments" must be an object`, name))}
	}
	if !p.Visible(name) {
		return unknownTool(name)
	}
	if req := p.RequiredScopes(name); len(req) > 0 {
		if err := auth.RequireScopes(pr, req); err != nil {
			missing := req
			var se *auth.ScopeError
			if errors.As(err, &se) {
				missing = se.Missing
			}
			rpc := jsonrpc.InvalidParams(fmt.Sprintf("insufficient scope for tool %q: missing %s", name, quoteList(missing)))
			rpc.Data = map[string]any{"error": "insufficient_scope", "missingScopes": missing}
			return &CallError{RPC: rpc, Tool: name, InsufficientScope: true, MissingScopes: missing}
		}
	}
	if p.skipArgs {
		return nil
	}
	e, ok := (*p.schemas.Load())[name]
	if !ok {
		ce := unknownTool(name)
		ce.SchemaUnknown = true
		return ce
	}
	if e.err != nil {
		return &CallError{Tool: name, RPC: jsonrpc.InternalError(
			fmt.Sprintf("tool %q cannot be called: the runtime refused its inputSchema (%v)", name, e.err))}
	}
	v, err := jsonrpc.DecodeStrict(args)
	if err != nil {
		return invalidArgs(name, err.Error(), nil)
	}
	if err := e.schema.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return invalidArgs(name, err.Error(), nil)
		}
		ptr, keyword, msg := describe(ve)
		return invalidArgs(name, fmt.Sprintf("at %s: %s (keyword %q)", pointerOrRoot(ptr), msg, keyword),
			map[string]any{"tool": name, "path": ptr, "keyword": keyword})
	}
	if e.cases != nil {
		if ptr, msg := e.cases.check(e.schema, v); msg != "" {
			return invalidArgs(name, fmt.Sprintf("at %s: %s", pointerOrRoot(ptr), msg),
				map[string]any{"tool": name, "path": ptr, "keyword": "properties"})
		}
	}
	return nil
}

var callParamKeys = []string{"name", "arguments", "_meta"}

// ReadCallParams reads the tool name and the arguments, as received (nil when absent), from
// tools/call params, refusing malformed params (-32602): not an object, duplicate or
// case-variant keys (see jsonrpc.Members), a missing or empty name.
func ReadCallParams(params json.RawMessage) (string, json.RawMessage, *CallError) {
	if len(params) == 0 {
		return "", nil, &CallError{RPC: jsonrpc.InvalidParams(`invalid tools/call params: missing params with a "name"`)}
	}
	members, err := jsonrpc.Members(params, callParamKeys...)
	if err != nil {
		return "", nil, &CallError{RPC: jsonrpc.InvalidParams("invalid tools/call params: " + err.Error())}
	}
	var name string
	var haveName bool
	var args json.RawMessage
	for _, m := range members {
		switch m.Key {
		case "name":
			if name, haveName = stringValue(m.Value); !haveName || name == "" {
				return "", nil, &CallError{RPC: jsonrpc.InvalidParams(`invalid tools/call params: "name" must be a non-empty string`)}
			}
		case "arguments":
			args = m.Value
		}
	}
	if !haveName {
		return "", nil, &CallError{RPC: jsonrpc.InvalidParams(`invalid tools/call params: missing "name"`)}
	}
	return name, args, nil
}

// stringValue decodes a JSON value (valid: jsonrpc.Members checked it) that should be a
// string. The common string without escapes is taken as it is.
func stringValue(v json.RawMessage) (string, bool) {
	if n := len(v); n >= 2 && v[0] == '"' && v[n-1] == '"' && bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
		return string(v[1 : n-1]), true
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

func unknownTool(name string) *CallError {
	return &CallError{Tool: name, RPC: jsonrpc.InvalidParams(fmt.Sprintf("unknown tool %q", name))}
}

func invalidArgs(name, detail string, data any) *CallError {
	rpc := jsonrpc.InvalidParams(truncate(fmt.Sprintf("invalid arguments for tool %q: %s", name, detail)))
	if data != nil {
		rpc.Data = data
	}
	return &CallError{Tool: name, RPC: rpc}
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("scope %q", s)
	}
	return strings.Join(q, ", ")
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "…"
}
