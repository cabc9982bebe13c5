// Package jsonrpc parses and checks JSON-RPC 2.0 messages as MCP clients send them.
//
// Parse is strict where a lenient reader would open a gap between what the runtime checks
// and what the upstream executes: it refuses invalid UTF-8, lone surrogate escapes, nesting
// deeper than Options.MaxDepth, duplicate envelope members and envelope members that differ
// from the spec names only in letter case. It never decodes params or results: they stay
// raw slices of the input, so the hot path allocates little.
package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// DefaultMaxDepth is the nesting limit when Options.MaxDepth is zero (config default).
const DefaultMaxDepth = 64

// FirstNoBatchVersion is the first MCP protocol revision that removed JSON-RPC batching.
const FirstNoBatchVersion = "2025-06-18"

// Options tune Parse. The zero value is safe: depth 64, batches refused.
type Options struct {
	// MaxDepth of JSON nesting (objects and arrays, the outermost counts as 1; a batch
	// array counts too). Zero means DefaultMaxDepth.
	MaxDepth int
	// AllowBatch accepts a JSON array of messages. MCP revisions before 2025-06-18 allow
	// batches; later ones do not (see BatchAllowed).
	AllowBatch bool
}

// BatchAllowed reports whether the MCP protocol revision allows JSON-RPC batches (only
// 2024-11-05 and 2025-03-26 do). Unknown or empty versions give false: callers map a
// missing MCP-Protocol-Version header to the session's negotiated revision first.
func BatchAllowed(protocolVersion string) bool {
	switch protocolVersion {
	case "2024-11-05", "2025-03-26":
		return true
	}
	return false
}

// Message is one JSON-RPC message. All raw fields are slices of the parsed input.
type Message struct {
	// Raw is the whole message as received.
	Raw json.RawMessage
	// ID is the raw id (a JSON string or integer; null only in error responses); nil for
	// notifications.
	ID json.RawMessage
	// Method is set for requests and notifications.
	Method string
	// Params is the raw params (object or array), nil when absent.
	Params json.RawMessage
	// Result is the raw result of a success response.
	Result json.RawMessage
	// Error is the error of an error response.
	Error *Error
}

// IsRequest reports a method call that expects a response.
func (m *Message) IsRequest() bool { return m.Method != "" && m.ID != nil }

// IsNotification reports a method call without id.
func (m *Message) IsNotification() bool { return m.Method != "" && m.ID == nil }

// IsResponse reports a result or error response.
func (m *Message) IsResponse() bool { return m.Method == "" }

var envelopeKeys = []string{"jsonrpc", "id", "method", "params", "result", "error"}

// Parse checks data as one JSON-RPC message or (when opts.AllowBatch) a batch of them.
// It returns -32700 for bytes that are not acceptable JSON and -32600 for everything else;
// a bad element refuses the whole batch (the message names its index). When a single
// message with a readable id is refused, err.ID holds that id.
func Parse(data []byte, opts Options) (msgs []Message, batch bool, err *Error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, false, ParseError("empty message")
	}
	if err := Validate(data, opts.MaxDepth); err != nil {
		return nil, false, err
	}
	i := skipWS(data, 0)
	if data[i] != '[' {
		m, err := parseOne(data)
		if err != nil {
			return nil, false, err
		}
		return []Message{m}, false, nil
	}
	if !opts.AllowBatch {
		return nil, true, InvalidRequest("JSON-RPC batches are not supported from protocol version " + FirstNoBatchVersion + " on")
	}
	n := 0
	ierr := eachElement(data, func(val []byte) error {
		n++
		m, err := parseOne(val)
		if err != nil {
			e := *err
			e.Message = fmt.Sprintf("batch element %d: %s", n-1, e.Message)
			e.ID = nil
			return &e
		}
		msgs = append(msgs, m)
		return nil
	})
	if ierr != nil {
		var e *Error
		if errors.As(ierr, &e) {
			return nil, true, e
		}
		return nil, true, ParseError(ierr.Error())
	}
	if n == 0 {
		return nil, true, InvalidRequest("empty batch")
	}
	return msgs, true, nil
}

// parseOne checks the envelope of one message (already valid JSON).
func parseOne(raw []byte) (Message, *Error) {
	m := Message{Raw: raw}
	var version, id, method, params, result, errObj json.RawMessage
	err := walkMembers(raw, envelopeKeys, func(key, val []byte) {
		switch string(key) {
		case "jsonrpc":
			version = val
		case "id":
			id = val
		case "method":
			method = val
		case "params":
			params = val
		case "result":
			result = val
		case "error":
			errObj = val
		}
	})
	if errors.Is(err, errNotObject) {
		return m, InvalidRequest("a message must be a JSON object")
	}
	if err != nil {
		return m, InvalidRequest(err.Error())
	}
	// Read the id first so a refusal can still name the request.
	idKind := idKindOf(id)
	if idKind == idInteger && !safeInteger(id) {
		return m, InvalidRequest(`"id" must be a string or an integer from -9007199254740991 to 9007199254740991 (2^53-1): peers that read JSON numbers as doubles, as JavaScript and the MCP SDKs do, cannot tell larger ones apart`)
	}
	fail := func(msg string) (Message, *Error) {
		e := InvalidRequest(msg)
		if idKind == idString || idKind == idInteger {
			e.ID = id
		}
		return m, e
	}
	if version == nil {
		return fail(`missing "jsonrpc": "2.0"`)
	}
	if s, ok := jsonString(version); !ok || s != "2.0" {
		return fail(`"jsonrpc" must be the string "2.0"`)
	}
	switch {
	case method != nil:
		if result != nil || errObj != nil {
			return fail(`a request cannot carry "result" or "error"`)
		}
		s, ok := jsonString(method)
		if !ok || s == "" {
			return fail(`"method" must be a non-empty string`)
		}
		m.Method = s
		if id != nil {
			if idKind != idString && idKind != idInteger {
				return fail(`"id" must be a string or an integer`)
			}
			m.ID = id
		}
		if params != nil {
			if c := firstByte(params); c != '{' && c != '[' {
				return fail(`"params" must be an object or an array`)
			}
			m.Params = params
		}
	case result != nil || errObj != nil:
		if result != nil && errObj != nil {
			return fail(`a response has exactly one of "result" and "error"`)
		}
		if params != nil {
			return fail(`a response cannot carry "params"`)
		}
		if id == nil {
			return fail(`a response must have an "id"`)
		}
		switch {
		case idKind == idString || idKind == idInteger:
		case idKind == idNull && errObj != nil:
		default:
			return fail(`"id" must be a string or an integer`)
		}
		m.ID = id
		if result != nil {
			m.Result = result
			break
		}
		e, msg := parseErrorObject(errObj)
		if e == nil {
			return fail(msg)
		}
		m.Error = e
	default:
		return fail(`a message needs "method" (request, notification) or "result"/"error" (response)`)
	}
	return m, nil
}

func parseErrorObject(raw []byte) (*Error, string) {
	members, err := Members(raw, "code", "message", "data")
	if err != nil {
		return nil, `"error" must be an object with an integer "code" and a string "message"`
	}
	var e Error
	var haveCode, haveMsg bool
	for _, mb := range members {
		switch mb.Key {
		case "code":
			if idKindOf(mb.Value) != idInteger {
				return nil, `"error.code" must be an integer`
			}
			c, perr := strconv.Atoi(string(mb.Value))
			if perr != nil {
				return nil, `"error.code" is out of range`
			}
			e.Code, haveCode = c, true
		case "message":
			s, ok := jsonString(mb.Value)
			if !ok {
				return nil, `"error.message" must be a string`
			}
			e.Message, haveMsg = s, true
		case "data":
			e.Data = json.RawMessage(mb.Value)
		}
	}
	if !haveCode || !haveMsg {
		return nil, `"error" must have an integer "code" and a string "message"`
	}
	return &e, ""
}

type idKind int

const (
	idAbsent idKind = iota
	idString
	idInteger
	idNull
	idOther
)

// idKindOf classifies a raw (valid JSON) id. Floats and exponents are not integers.
func idKindOf(raw []byte) idKind {
	if raw == nil {
		return idAbsent
	}
	switch c := raw[0]; {
	case c == '"':
		return idString
	case c == 'n':
		return idNull
	case c == '-' || (c >= '0' && c <= '9'):
		if bytes.ContainsAny(raw, ".eE") {
			return idOther
		}
		return idInteger
	}
	return idOther
}

// maxSafeInteger is 2^53-1, the largest integer a double holds exactly.
const maxSafeInteger = 1<<53 - 1

// safeInteger reports whether a JSON integer is within ±maxSafeInteger: two ids beyond it
// can read as one (2^53 and 2^53+1 are the same double), so a peer could answer one
// request with the other's id.
func safeInteger(raw []byte) bool {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return err == nil && -maxSafeInteger <= n && n <= maxSafeInteger
}

func firstByte(raw []byte) byte {
	if i := skipWS(raw, 0); i < len(raw) {
		return raw[i]
	}
	return 0
}

// jsonString decodes a raw JSON string value; ok is false for any other value.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return string(body), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// IDKey is the map key of a JSON-RPC id as a peer compares it: strings and numbers never
// collide, strings compare decoded ("a" and "\u0061" are one id) and numbers by value (0,
// -0 and 0.0 are one id). Keying pending requests by raw bytes instead would let a client
// pair a response with the wrong request once a peer re-encodes the id.
func IDKey(raw []byte) string {
	if len(raw) > 0 && raw[0] == '"' {
		if s, ok := jsonString(raw); ok {
			return "s" + s
		}
		return "s" + string(raw)
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return "n" + strconv.FormatInt(n, 10)
	}
	if f, err := strconv.ParseFloat(string(raw), 64); err == nil && f == float64(int64(f)) {
		return "n" + strconv.FormatInt(int64(f), 10)
	}
	return "n" + string(raw)
}
