package jsonrpc

import (
	"encoding/json"
	"errors"
)

var nullID = json.RawMessage("null")

type wireError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

type envelope struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  any             `json:"params,omitempty"`
	Result  any             `json:"result,omitempty"`
	Error   *wireError      `json:"error,omitempty"`
}

// ErrorResponse encodes an error response. A nil id falls back to e.ID, then to null
// (the JSON-RPC rule when the request id could not be read). It never fails: data that
// cannot be encoded is dropped.
func ErrorResponse(id json.RawMessage, e *Error) []byte {
	if e == nil {
		e = InternalError("unknown error")
	}
	if id == nil {
		id = e.ID
	}
	if id == nil || !Valid(id) {
		id = nullID
	}
	env := envelope{JSONRPC: "2.0", ID: id, Error: &wireError{Code: e.Code, Message: e.Message, Data: e.Data}}
	b, err := json.Marshal(env)
	if err != nil {
		env.Error.Data = nil
		b, _ = json.Marshal(env)
	}
	return b
}

// Response encodes a success response. result must not be nil (use json.RawMessage("{}")).
func Response(id json.RawMessage, result any) ([]byte, error) {
	if id == nil {
		return nil, errors.New("jsonrpc: a response needs an id")
	}
	if result == nil {
		return nil, errors.New("jsonrpc: a response needs a result")
	}
	return json.Marshal(envelope{JSONRPC: "2.0", ID: id, Result: result})
}

// Request encodes a request. params may be nil.
func Request(id json.RawMessage, method string, params any) ([]byte, error) {
	if id == nil || method == "" {
		return nil, errors.New("jsonrpc: a request needs an id and a method")
	}
	return json.Marshal(envelope{JSONRPC: "2.0", ID: id, Method: method, Params: params})
}

// Notification encodes a notification. params may be nil.
func Notification(method string, params any) ([]byte, error) {
	if method == "" {
		return nil, errors.New("jsonrpc: a notification needs a method")
	}
	return json.Marshal(envelope{JSONRPC: "2.0", Method: method, Params: params})
}

// SetID returns a copy of the single message raw with its "id" member value replaced by
// id, other members byte for byte unchanged (for id rewriting when multiplexing sessions).
// raw must be a message that Parse accepted and that has an id.
func SetID(raw []byte, id json.RawMessage) ([]byte, error) {
	if !Valid(id) {
		return nil, errors.New("jsonrpc: new id is not JSON")
	}
	start, end := -1, -1
	err := eachMember(raw, func(key, val []byte) error {
		k, err := unquoteKey(key)
		if err != nil {
			return err
		}
		if k == "id" {
			// val is a sub-slice of raw reaching to its end, so capacities give the offset.
			start = cap(raw) - cap(val)
			end = start + len(val)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if start < 0 {
		return nil, errors.New("jsonrpc: message has no id")
	}
	out := make([]byte, 0, len(raw)-(end-start)+len(id))
	out = append(out, raw[:start]...)
	out = append(out, id...)
	return append(out, raw[end:]...), nil
}
