package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"time"

	"github.com/dlclark/regexp2/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"golang.org/x/time/rate"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
)

// schemaURL is where each inputSchema is registered for compiling. Relative $refs resolve
// against it to other mem: URLs, which the loader refuses like any other.
const schemaURL = "mem:///tool-input-schema.json"

// noLoader refuses every URL: schemas may only reference themselves and the metaschemas the
// library embeds (draft-04 to 2020-12).
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("remote references are disabled in the runtime (%s)", url)
}

// patternMatchTimeout bounds one match of a pattern only the backtracking engine runs: a
// schema comes from the upstream, and a pattern like (a+)+$ can take exponential time.
const patternMatchTimeout = 50 * time.Millisecond

// ecmaRegexp is a pattern Go's RE2 cannot compile (look-around, backreferences — e.g. the
// e-mail pattern zod emits), run by an ECMA-262 backtracking engine, which is what JSON
// Schema specifies for "pattern". A match that fails or times out counts as no match: the
// value is refused rather than let through unchecked.
type ecmaRegexp struct{ re *regexp2.Regexp }

func (e ecmaRegexp) MatchString(s string) bool {
	if backtracking.Tokens() < 1 {
		return false // the runtime-wide budget is spent: refuse rather than check for free
	}
	start := time.Now()
	ok, err := e.re.MatchString(s)
	used := max(time.Since(start).Microseconds(), 1)
	backtracking.ReserveN(time.Now(), int(min(used, int64(backtracking.Burst())))) // more than the burst would not be charged at all
	return ok && err == nil
}

// backtracking is the CPU the backtracking engine may take, runtime-wide, in microseconds:
// one call can hold many strings for one pattern (array items, property names), so a
// per-match timeout alone would let a 1 MiB body take hours of CPU. Once it is spent,
// values that need the engine are refused until it refills.
var backtracking = rate.NewLimiter(backtrackMicrosPerSecond, backtrackBurstMicros)

const (
	backtrackMicrosPerSecond = 100_000 // a tenth of one core
	backtrackBurstMicros     = 500_000
)

func init() {
	// regexp2 checks match timeouts against a clock that ticks every 100 ms by default,
	// which would stretch patternMatchTimeout to ~150 ms.
	regexp2.SetTimeoutCheckPeriod(10 * time.Millisecond)
}

func (e ecmaRegexp) String() string { return e.re.String() }

// compileRegexp uses RE2 (linear time) when it can compile the pattern, else the ECMA-262
// engine; a pattern neither compiles makes the schema fail to compile.
func compileRegexp(s string) (jsonschema.Regexp, error) {
	if re, err := regexp.Compile(s); err == nil {
		return re, nil
	}
	re, err := regexp2.Compile(s, regexp2.ECMAScript|regexp2.Unicode)
	if err != nil {
		return nil, err
	}
	re.MatchTimeout = patternMatchTimeout
	return ecmaRegexp{re}, nil
}

var printer = message.NewPrinter(language.English)

// compile compiles one inputSchema: JSON Schema 2020-12 unless its $schema names another
// draft the library embeds; no loader, bounded size and depth.
func compile(raw []byte) (*jsonschema.Schema, error) {
	if len(raw) > MaxSchemaBytes {
		return nil, fmt.Errorf("inputSchema is %d bytes, more than %d", len(raw), MaxSchemaBytes)
	}
	if err := jsonrpc.Validate(raw, MaxSchemaDepth); err != nil {
		return nil, fmt.Errorf("inputSchema: %s", err.Message)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("inputSchema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{})
	c.UseRegexpEngine(compileRegexp)
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("inputSchema: %w", err)
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("inputSchema does not compile: %s", firstLine(err.Error()))
	}
	if evalCost(s, MaxSchemaCost) > MaxSchemaCost {
		return nil, fmt.Errorf("inputSchema is too costly to validate (more than %d subschema evaluations per value)", MaxSchemaCost)
	}
	return s, nil
}

// evalCost estimates how many subschema evaluations validating one value may take: the
// schema graph summed as a DAG, so a small schema whose anyOf branches $ref the same
// definition at every level (2^n evaluations from n definitions) is caught, saturating at
// limit+1. A recursive reference counts once: recursion is driven by the value's nesting,
// which the JSON-RPC depth limit bounds; see the package documentation for what that leaves.
func evalCost(root *jsonschema.Schema, limit int) int {
	memo := map[*jsonschema.Schema]int{}
	active := map[*jsonschema.Schema]bool{}
	var visit func(s *jsonschema.Schema) int
	visit = func(s *jsonschema.Schema) int {
		if s == nil {
			return 0
		}
		if c, ok := memo[s]; ok {
			return c
		}
		if active[s] {
			return 1
		}
		active[s] = true
		cost := 1
		add := func(children ...*jsonschema.Schema) {
			for _, c := range children {
				cost = min(limit+1, cost+visit(c))
			}
		}
		add(s.Ref, s.RecursiveRef, s.Not, s.If, s.Then, s.Else, s.PropertyNames, s.UnevaluatedProperties,
			s.Contains, s.Items2020, s.UnevaluatedItems, s.ContentSchema)
		if s.DynamicRef != nil {
			add(s.DynamicRef.Ref)
		}
		add(s.AllOf...)
		add(s.AnyOf...)
		add(s.OneOf...)
		add(s.PrefixItems...)
		for _, c := range s.Properties {
			add(c)
		}
		for _, c := range s.PatternProperties {
			add(c)
		}
		add(dependents(s)...)
		for _, v := range []any{s.AdditionalProperties, s.AdditionalItems, s.Items} {
			switch c := v.(type) {
			case *jsonschema.Schema:
				add(c)
			case []*jsonschema.Schema:
				add(c...)
			}
		}
		delete(active, s)
		memo[s] = cost
		return cost
	}
	return visit(root)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return truncate(s)
}

// FilterList takes the result of a tools/list response from the upstream and returns it
// without the tools the policy hides, other members unchanged. It also compiles the
// inputSchema of every visible tool into the cache (merging: a paginated list adds to what
// earlier pages cached; Invalidate starts over). An unchanged schema is not recompiled.
// A schema that fails to compile makes calls of that tool fail, not FilterList.
// An error means the result is not a tools/list result; do not relay it unfiltered. A
// result with a second spelling of "tools" ("Tools") is one: a Go client would read the
// unfiltered one.
func (p *Policy) FilterList(result json.RawMessage) (json.RawMessage, error) {
	return p.FilterListAt(result, p.Generation())
}

// FilterListAt is FilterList for a tools/list sent at generation gen (Generation): its
// schemas are cached only if no Invalidate came since; the result is filtered either way.
func (p *Policy) FilterListAt(result json.RawMessage, gen uint64) (json.RawMessage, error) {
	members, err := jsonrpc.Members(result, "tools")
	if err != nil {
		return nil, fmt.Errorf("tools/list result: %w", err)
	}
	var out bytes.Buffer
	out.Grow(len(result))
	out.WriteByte('{')
	found := false
	compiled := map[string]*entry{}
	for i, m := range members {
		if i > 0 {
			out.WriteByte(',')
		}
		key, _ := json.Marshal(m.Key)
		out.Write(key)
		out.WriteByte(':')
		if m.Key != "tools" {
			out.Write(m.Value)
			continue
		}
		found = true
		var list []json.RawMessage
		if err := json.Unmarshal(m.Value, &list); err != nil {
			return nil, fmt.Errorf("tools/list result: \"tools\" is not an array: %w", err)
		}
		out.WriteByte('[')
		n := 0
		for _, tool := range list {
			name, schema, ok := readTool(tool)
			if !ok || !p.Visible(name) {
				continue
			}
			if n > 0 {
				out.WriteByte(',')
			}
			out.Write(tool)
			n++
			compiled[name] = &entry{raw: string(schema)}
		}
		out.WriteByte(']')
	}
	if !found {
		return nil, errors.New(`tools/list result has no "tools" array`)
	}
	out.WriteByte('}')
	p.store(compiled, gen)
	return out.Bytes(), nil
}

// store merges freshly listed tools into the cache, compiling what changed, unless the
// cache was invalidated since generation gen.
func (p *Policy) store(listed map[string]*entry, gen uint64) {
	if len(listed) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen.Load() != gen {
		return // listed before the tools changed: the next list brings the current ones
	}
	old := *p.schemas.Load()
	next := maps.Clone(old)
	for name, e := range listed {
		if prev, ok := old[name]; ok && prev.raw == e.raw {
			continue
		}
		e.params = paramHeaders([]byte(e.raw)) // checked even for a tool whose schema is refused
		if _, ok := next[name]; !ok && len(next) >= MaxTools {
			e.err = fmt.Errorf("more than %d tools listed", MaxTools)
			next[name] = e
			continue
		}
		if !p.skipArgs {
			e.schema, e.err = compile([]byte(e.raw))
			if e.err == nil {
				e.cases, e.err = newCaseGuard(e.schema)
			}
		}
		next[name] = e
	}
	p.schemas.Store(&next)
}

// readTool reads a tool's name and inputSchema ({"type":"object"} when absent: MCP requires
// an object schema). ok is false for entries without a plain string name, or with keys a
// lenient reader would see differently (they are dropped).
func readTool(tool json.RawMessage) (string, json.RawMessage, bool) {
	members, err := jsonrpc.Members(tool, "name", "inputSchema")
	if err != nil {
		return "", nil, false
	}
	var name string
	schema := json.RawMessage(`{"type":"object"}`)
	for _, m := range members {
		switch m.Key {
		case "name":
			if json.Unmarshal(m.Value, &name) != nil {
				return "", nil, false
			}
		case "inputSchema":
			if string(m.Value) != "null" {
				schema = m.Value
			}
		}
	}
	return name, schema, name != ""
}

func pointerOrRoot(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}

// describe picks the first leaf of a validation error tree: its instance location as a JSON
// pointer ("" for the root), the failing keyword and the library's English message.
func describe(ve *jsonschema.ValidationError) (ptr, keyword, msg string) {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	var sb strings.Builder
	for _, tok := range ve.InstanceLocation {
		sb.WriteByte('/')
		sb.WriteString(jsonrpc.EscapePointer(tok))
	}
	keyword = strings.Join(ve.ErrorKind.KeywordPath(), "/")
	return sb.String(), keyword, ve.ErrorKind.LocalizedString(printer)
}

// dependents are the schemas of s that apply when a property is present: 2020-12's
// dependentSchemas and the schema entries of draft 7's dependencies.
func dependents(s *jsonschema.Schema) []*jsonschema.Schema {
	var out []*jsonschema.Schema
	for _, c := range s.DependentSchemas {
		out = append(out, c)
	}
	for _, d := range s.Dependencies {
		if c, ok := d.(*jsonschema.Schema); ok {
			out = append(out, c)
		}
	}
	return out
}
