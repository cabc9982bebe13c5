package jsonrpc

import (
	"encoding/json"
	"fmt"
)

// JSON-RPC 2.0 error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// Error is a JSON-RPC error object. It implements error.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
	// ID is the id of the offending request when Parse could read one (a single message
	// with a valid id but a bad envelope). ErrorResponse uses it when given a nil id, so a
	// client can match the refusal to its request. Never serialized.
	ID json.RawMessage `json:"-"`
}

func (e *Error) Error() string { return fmt.Sprintf("jsonrpc error %d: %s", e.Code, e.Message) }

// NewError makes an error with any code.
func NewError(code int, msg string) *Error { return &Error{Code: code, Message: msg} }

// ParseError (-32700): the bytes are not JSON (or not UTF-8, or hold a lone surrogate).
func ParseError(msg string) *Error {
	return &Error{Code: CodeParseError, Message: "parse error: " + msg}
}

// InvalidRequest (-32600): JSON, but not a valid JSON-RPC 2.0 message.
func InvalidRequest(msg string) *Error {
	return &Error{Code: CodeInvalidRequest, Message: "invalid request: " + msg}
}

// MethodNotFound (-32601).
func MethodNotFound(method string) *Error {
	return &Error{Code: CodeMethodNotFound, Message: fmt.Sprintf("method not found: %q", method)}
}

// InvalidParams (-32602). msg is sent to the client as is.
func InvalidParams(msg string) *Error { return &Error{Code: CodeInvalidParams, Message: msg} }

// InternalError (-32603).
func InternalError(msg string) *Error {
	return &Error{Code: CodeInternalError, Message: "internal error: " + msg}
}
