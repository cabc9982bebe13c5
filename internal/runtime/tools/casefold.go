package tools

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
)

// caseGuard finds argument keys that differ from a property the schema declares at that
// place only in letter case. JSON Schema sees such a key as one more (allowed) property
// and never checks the declared one's constraints, while a Go upstream decoding into a
// struct matches field names case-insensitively and reads it as the declared property:
// {"PATH":"/etc/shadow"} would pass a pattern on "path" unchecked.
//
// Which properties are declared at a place is read from the compiled schema along the
// value's own path: properties, patternProperties and additionalProperties for members,
// prefixItems, items and contains for elements, through $ref, $dynamicRef, allOf, anyOf,
// oneOf, if/then/else and dependent schemas (not through not: what it names is forbidden,
// not declared). Places with no declared names (a free-form map) accept any key.
type caseGuard struct {
	// closures maps every schema of the tool to the schemas that apply wherever it does.
	closures map[*jsonschema.Schema]*closure
}

// closure is the schemas that apply together with one schema, and their property names.
type closure struct {
	schemas []*jsonschema.Schema
	exact   map[string]bool   // declared property names
	folded  map[string]string // FoldKey of a declared name → that name
}

// maxClosureEntries bounds the precomputed closures of one tool (schemas and names summed
// over all of them); real schemas stay orders of magnitude below it.
const maxClosureEntries = 1 << 18

// newCaseGuard precomputes the closure of every schema reachable from root, so a call
// only looks names up. nil when the schema declares no property names at all; an error
// when the closures would exceed maxClosureEntries (the schema is then refused, as one too
// costly to validate is).
func newCaseGuard(root *jsonschema.Schema) (*caseGuard, error) {
	g := &caseGuard{closures: map[*jsonschema.Schema]*closure{}}
	named := false
	entries := 0
	var visit func(s *jsonschema.Schema)
	visit = func(s *jsonschema.Schema) {
		if s == nil || entries > maxClosureEntries {
			return
		}
		if _, done := g.closures[s]; done {
			return
		}
		c := &closure{schemas: applying(s)}
		g.closures[s] = c
		entries += len(c.schemas)
		for _, a := range c.schemas {
			for name := range a.Properties {
				if c.exact == nil {
					c.exact, c.folded = map[string]bool{}, map[string]string{}
				}
				c.exact[name] = true
				c.folded[jsonrpc.FoldKey(name)] = name
				named = true
				entries++
			}
		}
		for _, a := range c.schemas {
			for _, child := range children(a) {
				visit(child)
			}
		}
	}
	visit(root)
	switch {
	case entries > maxClosureEntries:
		return nil, fmt.Errorf("inputSchema is too costly to check for case-variant keys (more than %d schema references)", maxClosureEntries)
	case !named:
		return nil, nil
	}
	return g, nil
}

// applying is s and every schema that applies to the same value as s does.
func applying(s *jsonschema.Schema) []*jsonschema.Schema {
	var out []*jsonschema.Schema
	seen := map[*jsonschema.Schema]bool{}
	var add func(s *jsonschema.Schema)
	add = func(s *jsonschema.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		out = append(out, s)
		add(s.Ref)
		add(s.RecursiveRef)
		if s.DynamicRef != nil {
			add(s.DynamicRef.Ref)
		}
		for _, list := range [][]*jsonschema.Schema{s.AllOf, s.AnyOf, s.OneOf, {s.If, s.Then, s.Else}} {
			for _, c := range list {
				add(c)
			}
		}
		for _, c := range dependents(s) {
			add(c)
		}
	}
	add(s)
	return out
}

// children are the schemas of s that apply to members or elements of the value.
func children(s *jsonschema.Schema) []*jsonschema.Schema {
	out := []*jsonschema.Schema{s.UnevaluatedProperties, s.Contains, s.Items2020, s.UnevaluatedItems}
	for _, c := range s.Properties {
		out = append(out, c)
	}
	for _, c := range s.PatternProperties {
		out = append(out, c)
	}
	out = append(out, s.PrefixItems...)
	for _, v := range []any{s.AdditionalProperties, s.Items, s.AdditionalItems} {
		switch c := v.(type) {
		case *jsonschema.Schema:
			out = append(out, c)
		case []*jsonschema.Schema:
			out = append(out, c...)
		}
	}
	return out
}

// check walks a value decoded by jsonrpc.DecodeStrict under root; it returns the JSON
// pointer and a message for a case variant of a declared name (the smallest key of the
// first object, in key order, that has one), or "" and "".
func (g *caseGuard) check(root *jsonschema.Schema, v any) (ptr, msg string) {
	var buf [16]*jsonschema.Schema
	w := caseWalk{g: g, stack: buf[:0]}
	if w.value([]*jsonschema.Schema{root}, v) {
		return "", ""
	}
	var sb strings.Builder
	for i := len(w.failPath) - 1; i >= 0; i-- {
		sb.WriteByte('/')
		sb.WriteString(jsonrpc.EscapePointer(w.failPath[i]))
	}
	return sb.String(), w.msg
}

// caseWalk is one check: the schemas of the places being walked share one stack, and the
// path is built only on failure, innermost token first.
type caseWalk struct {
	g        *caseGuard
	stack    []*jsonschema.Schema
	failPath []string
	msg      string
}

func (w *caseWalk) value(seeds []*jsonschema.Schema, v any) bool {
	switch x := v.(type) {
	case map[string]any:
		var kb [8]string
		keys := kb[:0]
		bad, declared := "", ""
		for k := range x {
			if d, ok := w.g.variantOf(seeds, k); ok && (bad == "" || k < bad) {
				bad, declared = k, d
			}
			keys = append(keys, k)
		}
		if bad != "" {
			w.failPath = append(w.failPath, bad)
			w.msg = fmt.Sprintf("key %q differs from the declared property %q only in letter case (an upstream matching names case-insensitively would read it as %q unchecked); spell it %q", bad, declared, declared, declared)
			return false
		}
		slices.Sort(keys) // the same input names the same key
		for _, k := range keys {
			start := len(w.stack)
			w.stack = w.g.appendMemberSchemas(w.stack, seeds, k)
			if len(w.stack) > start && !w.value(w.stack[start:], x[k]) {
				w.failPath = append(w.failPath, k)
				return false
			}
			w.stack = w.stack[:start]
		}
	case []any:
		for i, e := range x {
			start := len(w.stack)
			w.stack = w.g.appendElementSchemas(w.stack, seeds, i)
			if len(w.stack) > start && !w.value(w.stack[start:], e) {
				w.failPath = append(w.failPath, strconv.Itoa(i))
				return false
			}
			w.stack = w.stack[:start]
		}
	}
	return true
}

// variantOf reports the declared name k is a case variant of, where seeds apply.
func (g *caseGuard) variantOf(seeds []*jsonschema.Schema, k string) (string, bool) {
	declared := ""
	for _, s := range seeds {
		c := g.closures[s]
		if c == nil || c.exact == nil {
			continue
		}
		if c.exact[k] {
			return "", false
		}
		if d, ok := c.folded[jsonrpc.FoldKey(k)]; ok && declared == "" {
			declared = d
		}
	}
	return declared, declared != ""
}

// appendMemberSchemas appends the schemas that apply to member k of an object where seeds
// apply.
func (g *caseGuard) appendMemberSchemas(next, seeds []*jsonschema.Schema, k string) []*jsonschema.Schema {
	for _, seed := range seeds {
		c := g.closures[seed]
		if c == nil {
			continue
		}
		for _, s := range c.schemas {
			matched := false
			if p, ok := s.Properties[k]; ok {
				next, matched = append(next, p), true
			}
			for re, p := range s.PatternProperties {
				if re.MatchString(k) {
					next, matched = append(next, p), true
				}
			}
			if a, ok := s.AdditionalProperties.(*jsonschema.Schema); ok && !matched {
				next = append(next, a)
			}
			if s.UnevaluatedProperties != nil {
				next = append(next, s.UnevaluatedProperties)
			}
		}
	}
	return next
}

// appendElementSchemas appends the schemas that apply to element i of an array where
// seeds apply.
func (g *caseGuard) appendElementSchemas(next, seeds []*jsonschema.Schema, i int) []*jsonschema.Schema {
	for _, seed := range seeds {
		c := g.closures[seed]
		if c == nil {
			continue
		}
		for _, s := range c.schemas {
			switch {
			case i < len(s.PrefixItems):
				next = append(next, s.PrefixItems[i])
			case s.Items2020 != nil:
				next = append(next, s.Items2020)
			}
			switch it := s.Items.(type) { // draft 7 and earlier
			case *jsonschema.Schema:
				next = append(next, it)
			case []*jsonschema.Schema:
				if i < len(it) {
					next = append(next, it[i])
				} else if a, ok := s.AdditionalItems.(*jsonschema.Schema); ok {
					next = append(next, a)
				}
			}
			if s.Contains != nil {
				next = append(next, s.Contains)
			}
			if s.UnevaluatedItems != nil {
				next = append(next, s.UnevaluatedItems)
			}
		}
	}
	return next
}
