package tools

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
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

// schemaNode is the part of an inputSchema the header annotations live in. Properties stay
// raw: a subschema may be a boolean (true/false), which is no node and carries no
// annotation, and must not hide its siblings' annotations.
type schemaNode struct {
	XMCPHeader json.RawMessage            `json:"x-mcp-header"`
	Properties map[string]json.RawMessage `json:"properties"`
}

// paramHeaders lists the x-mcp-header annotations of an inputSchema, reached through
// nested "properties" only (as clients look for them).
func paramHeaders(schema []byte) []ParamHeader {
	var out []ParamHeader
	var walk func(raw json.RawMessage, path []string)
	walk = func(raw json.RawMessage, path []string) {
		var node schemaNode
		if len(path) > MaxSchemaDepth || len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &node) != nil {
			return
		}
		var header string
		if len(path) > 0 && json.Unmarshal(node.XMCPHeader, &header) == nil && header != "" {
			out = append(out, ParamHeader{Name: header, Path: path})
		}
		for name, child := range node.Properties {
			walk(child, append(append([]string(nil), path...), name))
		}
	}
	walk(schema, nil)
	return out
}

// CheckParamHeaders compares a tools/call's Mcp-Param-* headers with its arguments, as the
// 2026-07-28 transport requires of every party that reads both: an annotated argument
// that is present (and not null) must be mirrored exactly, once, and an absent one must not
// be. values returns every value a request header has (net/http's Header.Values: names
// case-insensitive, whitespace trimmed). known is false when the tool's inputSchema has not
// been seen; the caller fetches tools/list and asks again, and refuses the call if it is
// still unknown. A non-nil error names the header and says what disagrees; it is meant for
// the client.
func (p *Policy) CheckParamHeaders(tool string, args json.RawMessage, values func(string) []string) (known bool, err error) {
	e, ok := (*p.schemas.Load())[tool]
	if !ok {
		return false, nil
	}
	for _, b := range e.params {
		name := HeaderPrefix + b.Name
		got := values(name)
		if len(got) > 1 {
			return true, fmt.Errorf("%s header is repeated", name)
		}
		raw, present, err := lookup(args, b.Path)
		if err != nil {
			return true, fmt.Errorf("argument %q for %s: %w", strings.Join(b.Path, "."), name, err)
		}
		if !present || string(raw) == "null" {
			if len(got) > 0 {
				return true, fmt.Errorf("%s header is set but argument %q is absent", name, strings.Join(b.Path, "."))
			}
			continue
		}
		if len(got) == 0 {
			return true, fmt.Errorf("missing %s header for argument %q", name, strings.Join(b.Path, "."))
		}
		value, ok := DecodeHeaderValue(got[0])
		if !ok {
			return true, fmt.Errorf("%s header is not valid =?base64?…?= encoding", name)
		}
		if !mirrors(value, raw) {
			return true, fmt.Errorf("%s header does not match argument %q", name, strings.Join(b.Path, "."))
		}
	}
	return true, nil
}

// lookup follows path through nested argument objects. A key that differs from the path's
// only in letter case, or a repeated key, is an error: an upstream decoding into Go structs
// would read such a key as the argument, so the header could not be checked against what runs.
func lookup(args json.RawMessage, path []string) (json.RawMessage, bool, error) {
	cur := args
	for _, key := range path {
		if len(cur) == 0 || cur[0] != '{' {
			return nil, false, nil
		}
		members, err := jsonrpc.Members(cur, key)
		if err != nil {
			return nil, false, err
		}
		found := false
		for _, m := range members {
			if m.Key == key {
				cur, found = m.Value, true
				break
			}
		}
		if !found {
			return nil, false, nil
		}
	}
	return cur, true, nil
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
		// Only the canonical decimal form: "042", "+42", "4.2e1" or "0x2Ap0" would pass a
		// numeric comparison while an intermediary matching the text sees another value.
		if !canonicalInteger.MatchString(header) {
			return false
		}
		h, err := strconv.ParseInt(header, 10, 64)
		return err == nil && float64(h) == v
	}
	return false
}

var canonicalInteger = regexp.MustCompile(`^(0|-?[1-9][0-9]*)$`)
