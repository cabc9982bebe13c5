package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
)

// span is the byte range [start, end) of a JSON value inside a message; end == 0 means absent.
type span struct{ start, end int }

func (s span) ok() bool { return s.end > 0 }

// envelope locates the JSON-RPC members of one message without decoding the rest, so
// rewriting an id or a progress token touches only those bytes: everything else (the
// client's original id included) is passed on byte for byte.
type envelope struct {
	raw    []byte
	id     span
	method string
	params span
	result span
	errv   span
}

func (e *envelope) isRequest() bool      { return e.method != "" && e.id.ok() }
func (e *envelope) isNotification() bool { return e.method != "" && !e.id.ok() }
func (e *envelope) isResponse() bool {
	return e.method == "" && e.id.ok() && (e.result.ok() || e.errv.ok())
}
func (e *envelope) idRaw() []byte     { return e.raw[e.id.start:e.id.end] }
func (e *envelope) get(s span) []byte { return e.raw[s.start:s.end] }

var errNotObject = errors.New("not a JSON-RPC message object")

// parseEnvelope checks that b is one valid JSON object and finds its JSON-RPC members.
// Duplicate id/method/params keys are refused: the relay and the server behind it must
// never disagree about which one counts.
func parseEnvelope(b []byte) (envelope, error) {
	if !jsonrpc.Valid(b) {
		return envelope{raw: b}, errors.New("invalid JSON")
	}
	return locateEnvelope(b)
}

// locateEnvelope is parseEnvelope for a message already known to be valid JSON: a
// client's message, which the server validated before Send or Exchange (see Session), is
// not scanned a second time.
func locateEnvelope(b []byte) (envelope, error) {
	e := envelope{raw: b}
	start := skipWS(b, 0)
	if start >= len(b) || b[start] != '{' {
		return e, errNotObject
	}
	var methodSpan span
	err := members(b, span{start, len(b)}, func(key string, v span) error {
		var dst *span
		switch key {
		case "id":
			dst = &e.id
		case "method":
			dst = &methodSpan
		case "params":
			dst = &e.params
		case "result":
			dst = &e.result
		case "error":
			dst = &e.errv
		default:
			return nil
		}
		if dst.ok() {
			return fmt.Errorf("duplicate %q member", key)
		}
		*dst = v
		return nil
	})
	if err != nil {
		return e, err
	}
	if e.id.ok() && bytes.Equal(e.get(e.id), []byte("null")) {
		// A null id only appears on error responses to unparseable requests; nothing to route.
		e.id = span{}
	}
	if e.id.ok() {
		if c := b[e.id.start]; c != '"' && c != '-' && (c < '0' || c > '9') {
			return e, errors.New("id must be a string or a number")
		}
	}
	if methodSpan.ok() {
		m, err := unquote(e.get(methodSpan))
		if err != nil || m == "" {
			return e, errors.New("method must be a non-empty string")
		}
		e.method = m
	}
	return e, nil
}

// members calls fn for each member of the object at obj (which must hold valid JSON).
func members(b []byte, obj span, fn func(key string, v span) error) error {
	i := skipWS(b, obj.start)
	if i >= obj.end || b[i] != '{' {
		return errNotObject
	}
	i = skipWS(b, i+1)
	if i < obj.end && b[i] == '}' {
		return nil
	}
	for i < obj.end {
		if b[i] != '"' {
			return errors.New("malformed object")
		}
		ke, err := skipValue(b, i)
		if err != nil {
			return err
		}
		key, err := unquote(b[i:ke])
		if err != nil {
			return err
		}
		i = skipWS(b, ke)
		if i >= obj.end || b[i] != ':' {
			return errors.New("malformed object")
		}
		vs := skipWS(b, i+1)
		ve, err := skipValue(b, vs)
		if err != nil {
			return err
		}
		if err := fn(key, span{vs, ve}); err != nil {
			return err
		}
		i = skipWS(b, ve)
		if i < obj.end && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < obj.end && b[i] == '}' {
			return nil
		}
		return errors.New("malformed object")
	}
	return errors.New("truncated object")
}

// member finds one member of the object at obj.
func member(b []byte, obj span, key string) (span, bool) {
	var found span
	_ = members(b, obj, func(k string, v span) error {
		if k == key {
			found = v
		}
		return nil
	})
	return found, found.ok()
}

// path finds a nested member, e.g. path(b, params, "_meta", "progressToken").
func path(b []byte, obj span, keys ...string) (span, bool) {
	cur := obj
	for _, k := range keys {
		if cur.end <= cur.start || b[cur.start] != '{' {
			return span{}, false
		}
		next, ok := member(b, cur, k)
		if !ok {
			return span{}, false
		}
		cur = next
	}
	return cur, true
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue returns the end of the JSON value starting at i.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("truncated value")
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, nil
			}
		}
		return 0, errors.New("truncated string")
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := skipValue(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errors.New("truncated value")
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return j, nil
			}
			j++
		}
		return j, nil
	}
}

func unquote(q []byte) (string, error) {
	if len(q) >= 2 && q[0] == '"' && bytes.IndexByte(q, '\\') < 0 {
		return string(q[1 : len(q)-1]), nil
	}
	var s string
	err := json.Unmarshal(q, &s)
	return s, err
}

// splice returns a copy of b with the bytes of s replaced by repl.
func splice(b []byte, s span, repl []byte) []byte {
	out := make([]byte, 0, len(b)-(s.end-s.start)+len(repl))
	out = append(out, b[:s.start]...)
	out = append(out, repl...)
	return append(out, b[s.end:]...)
}

// JSON-RPC error codes used by the relay.
const (
	codeInternalError = -32603
	codeInvalidParams = -32602
)

// errorResponse builds a JSON-RPC error response carrying id byte for byte.
func errorResponse(id []byte, code int, message string) []byte {
	msg, _ := json.Marshal(message)
	out := make([]byte, 0, len(id)+len(msg)+64)
	out = append(out, `{"jsonrpc":"2.0","id":`...)
	out = append(out, id...)
	out = append(out, `,"error":{"code":`...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, `,"message":`...)
	out = append(out, msg...)
	return append(out, "}}"...)
}

// resultResponse builds a JSON-RPC result response carrying id byte for byte.
func resultResponse(id, result []byte) []byte {
	out := make([]byte, 0, len(id)+len(result)+40)
	out = append(out, `{"jsonrpc":"2.0","id":`...)
	out = append(out, id...)
	out = append(out, `,"result":`...)
	out = append(out, result...)
	return append(out, '}')
}

// request builds a JSON-RPC request (params may be nil).
func request(id int64, method string, params []byte) []byte {
	m, _ := json.Marshal(method)
	out := []byte(`{"jsonrpc":"2.0","id":`)
	out = strconv.AppendInt(out, id, 10)
	out = append(out, `,"method":`...)
	out = append(out, m...)
	if params != nil {
		out = append(out, `,"params":`...)
		out = append(out, params...)
	}
	return append(out, '}')
}

// notification builds a JSON-RPC notification (params may be nil).
func notification(method string, params []byte) []byte {
	m, _ := json.Marshal(method)
	out := []byte(`{"jsonrpc":"2.0","method":`)
	out = append(out, m...)
	if params != nil {
		out = append(out, `,"params":`...)
		out = append(out, params...)
	}
	return append(out, '}')
}

// oneLine makes a message safe for newline-delimited framing: whitespace between tokens
// may contain newlines (strings cannot), so compacting removes every one of them.
func oneLine(msg []byte) ([]byte, error) {
	if !bytes.ContainsAny(msg, "\r\n") {
		return msg, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, msg); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// idSuffix reads the id of a message from its last bytes when "id" is its last member
// ({…,"id":7}): the other end of idPrefix, for servers that write the id last.
func idSuffix(tail []byte) ([]byte, bool) {
	const ws = " \t\r\n"
	t := bytes.TrimRight(tail, ws)
	if len(t) == 0 || t[len(t)-1] != '}' {
		return nil, false
	}
	t = bytes.TrimRight(t[:len(t)-1], ws)
	end, start := len(t), len(t)
	switch {
	case end > 0 && t[end-1] == '"': // a string id: back to its unescaped opening quote
		start = end - 2
		for start >= 0 && (t[start] != '"' || escapedAt(t, start)) {
			start--
		}
		if start < 0 {
			return nil, false
		}
	default: // an integer id
		for start > 0 && (t[start-1] == '-' || (t[start-1] >= '0' && t[start-1] <= '9')) {
			start--
		}
	}
	id := t[start:end]
	rest := bytes.TrimRight(t[:start], ws)
	if len(id) == 0 || !jsonrpc.Valid(id) || !bytes.HasSuffix(rest, []byte(":")) {
		return nil, false
	}
	rest = bytes.TrimRight(rest[:len(rest)-1], ws)
	if !bytes.HasSuffix(rest, []byte(`"id"`)) {
		return nil, false
	}
	rest = bytes.TrimRight(rest[:len(rest)-len(`"id"`)], ws)
	if len(rest) == 0 || (rest[len(rest)-1] != ',' && rest[len(rest)-1] != '{') {
		return nil, false // "id" inside a string, not a member
	}
	return id, true
}

// escapedAt reports whether the byte at i follows an odd number of backslashes.
func escapedAt(b []byte, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && b[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// idPrefix reads the id of a message from its first bytes: used when a message is too
// large to keep, so the request it answers can still be failed instead of hanging.
func idPrefix(prefix []byte) ([]byte, bool) {
	i := skipWS(prefix, 0)
	if i >= len(prefix) || prefix[i] != '{' {
		return nil, false
	}
	i = skipWS(prefix, i+1)
	for i < len(prefix) && prefix[i] == '"' {
		ke, err := skipValue(prefix, i)
		if err != nil {
			return nil, false
		}
		key, err := unquote(prefix[i:ke])
		if err != nil {
			return nil, false
		}
		i = skipWS(prefix, ke)
		if i >= len(prefix) || prefix[i] != ':' {
			return nil, false
		}
		vs := skipWS(prefix, i+1)
		ve, err := skipValue(prefix, vs)
		if err != nil || ve >= len(prefix) {
			return nil, false // value may be cut off
		}
		if key == "id" {
			id := prefix[vs:ve]
			if jsonrpc.Valid(id) && (id[0] == '"' || id[0] == '-' || (id[0] >= '0' && id[0] <= '9')) {
				return id, true
			}
			return nil, false
		}
		i = skipWS(prefix, ve)
		if i >= len(prefix) || prefix[i] != ',' {
			return nil, false
		}
		i = skipWS(prefix, i+1)
	}
	return nil, false
}
