package tools

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParamHeader is one tool argument a client mirrors into an HTTP header under MCP
// 2026-07-28 (SEP-2243): the inputSchema property at Path carries "x-mcp-header": Name, and
// the request then has "Mcp-Param-<Name>: <value>".
type ParamHeader struct {
	Name string
	Path []string
}

// HeaderPrefix is what precedes ParamHeader.Name in the HTTP header's name.
const HeaderPrefix = "Mcp-Param-"

// maxSafeInteger is the largest integer a JSON number keeps exactly in every client
// (IEEE-754 double); SEP-2243 mirrors only integers within ±maxSafeInteger.
const maxSafeInteger = 1<<53 - 1

// schemaNode is the part of an inputSchema the header annotations live in.
type schemaNode struct {
	XMCPHeader json.RawMessage       `json:"x-mcp-header"`
	Properties map[string]schemaNode `json:"properties"`
}

// paramHeaders lists the x-mcp-header annotations of an inputSchema, reached through
// nested "properties" only (as clients look for them). A malformed schema has none.
func paramHeaders(schema []byte) []ParamHeader {
	var root schemaNode
	if json.Unmarshal(schema, &root) != nil {
		return nil
	}
	var out []ParamHeader
	var walk func(props map[string]schemaNode, prefix []string, depth int)
	walk = func(props map[string]schemaNode, prefix []string, depth int) {
		if depth > MaxSchemaDepth {
			return
		}
		for name, node := range props {
			path := append(append([]string(nil), prefix...), name)
			var header string
			if json.Unmarshal(node.XMCPHeader, &header) == nil && header != "" {
				out = append(out, ParamHeader{Name: header, Path: path})
			}
			walk(node.Properties, path, depth+1)
		}
	}
	walk(root.Properties, nil, 0)
	return out
}

// CheckParamHeaders compares a tools/call's Mcp-Param-* headers with its arguments, as the
// 2026-07-28 transport requires of every party that reads both: an annotated argument
// that is present (and not null) must be mirrored exactly, and an absent one must not be.
// header reads a request header by name (case-insensitively, whitespace trimmed, as
// net/http does). known is false when the tool's inputSchema has not been seen; the caller
// fetches tools/list and asks again. A non-nil error names the header and says what
// disagrees; it is meant for the client.
func (p *Policy) CheckParamHeaders(tool string, args json.RawMessage, header func(string) string) (known bool, err error) {
	e, ok := (*p.schemas.Load())[tool]
	if !ok {
		return false, nil
	}
	if len(e.params) == 0 {
		return true, nil
	}
	var obj map[string]json.RawMessage
	if len(args) > 0 && string(args) != "null" {
		if err := json.Unmarshal(args, &obj); err != nil {
			return true, fmt.Errorf("arguments of tool %q are not an object", tool)
		}
	}
	for _, b := range e.params {
		name := HeaderPrefix + b.Name
		got := header(name)
		raw, present := lookup(obj, b.Path)
		if !present || string(raw) == "null" {
			if got != "" {
				return true, fmt.Errorf("%s header is set but argument %q is absent", name, strings.Join(b.Path, "."))
			}
			continue
		}
		if got == "" {
			return true, fmt.Errorf("missing %s header for argument %q", name, strings.Join(b.Path, "."))
		}
		value, ok := DecodeHeaderValue(got)
		if !ok {
			return true, fmt.Errorf("%s header is not valid =?base64?…?= encoding", name)
		}
		if !mirrors(value, raw) {
			return true, fmt.Errorf("%s header does not match argument %q", name, strings.Join(b.Path, "."))
		}
	}
	return true, nil
}

// lookup follows path through nested argument objects.
func lookup(obj map[string]json.RawMessage, path []string) (json.RawMessage, bool) {
	for i, key := range path {
		raw, ok := obj[key]
		if !ok {
			return nil, false
		}
		if i == len(path)-1 {
			return raw, true
		}
		obj = nil
		if json.Unmarshal(raw, &obj) != nil {
			return nil, false
		}
	}
	return nil, false
}

// DecodeHeaderValue undoes the "=?base64?…?=" wrapping SEP-2243 uses for header values
// (Mcp-Name, Mcp-Param-*) that are not plain printable ASCII: strict, padded standard
// Base64; a value without both markers is literal. ok is false for invalid Base64.
func DecodeHeaderValue(v string) (string, bool) {
	inner, ok := strings.CutPrefix(v, "=?base64?")
	if !ok {
		return v, true
	}
	inner, ok = strings.CutSuffix(inner, "?=")
	if !ok {
		return v, true
	}
	b, err := base64.StdEncoding.Strict().DecodeString(inner)
	return string(b), err == nil
}

// mirrors reports whether a decoded header value represents the JSON argument: strings
// byte for byte, booleans as true/false, integers (within ±2^53-1) numerically. Other JSON
// values cannot be mirrored, so no header matches them.
func mirrors(header string, raw json.RawMessage) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch v := v.(type) {
	case string:
		return header == v
	case bool:
		return header == strconv.FormatBool(v)
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > maxSafeInteger {
			return false
		}
		h, err := strconv.ParseFloat(header, 64)
		return err == nil && h == v
	}
	return false
}
