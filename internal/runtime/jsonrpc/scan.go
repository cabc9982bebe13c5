package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// checkText runs the checks encoding/json does not: nesting depth and lone UTF-16
// surrogate escapes. It is one linear pass over the bytes that tracks strings, so it refuses
// a deep document before anything is decoded. Syntax is left to json.Valid.
//
// Lone surrogates ("\ud800" without a low half, or a low half alone) are refused: encoding/json
// silently turns them into U+FFFD while other parsers keep or reject them, and a validator
// that reads different text than the upstream is a bypass.
func checkText(data []byte, maxDepth int) *Error {
	depth := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			end, err := scanString(data, i+1)
			if err != nil {
				return err
			}
			i = end
		case '{', '[':
			depth++
			if depth > maxDepth {
				return InvalidRequest(fmt.Sprintf("JSON nested deeper than %d levels", maxDepth))
			}
		case '}', ']':
			if depth > 0 {
				depth--
			}
		}
	}
	return nil
}

// scanString returns the index of the closing quote of the string whose body starts at i
// (len(data) when unterminated: json.Valid reports that).
func scanString(data []byte, i int) (int, *Error) {
	q := -1 // index of the next quote at or after i, once found; kept so escapes stay linear
	for i < len(data) {
		// Jump with IndexByte (vectorised) to the next quote, then look for an escape before it.
		if q < i {
			k := bytes.IndexByte(data[i:], '"')
			if k < 0 {
				return len(data), nil
			}
			q = i + k
		}
		b := bytes.IndexByte(data[i:q], '\\')
		if b < 0 {
			return q, nil
		}
		i += b
		if i+1 < len(data) && data[i+1] == 'u' {
			r, ok := hex4(data, i+2)
			if ok && r >= 0xDC00 && r <= 0xDFFF {
				return 0, ParseError("lone UTF-16 surrogate escape in string")
			}
			if ok && r >= 0xD800 && r <= 0xDBFF {
				lo, ok2 := rune(0), false
				if i+7 < len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
					lo, ok2 = hex4(data, i+8)
				}
				if !ok2 || lo < 0xDC00 || lo > 0xDFFF {
					return 0, ParseError("lone UTF-16 surrogate escape in string")
				}
				i += 12
				continue
			}
			i += 6
			continue
		}
		i += 2
	}
	return len(data), nil
}

func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// Validate checks that data is one JSON value, valid UTF-8, nested at most maxDepth levels
// and free of lone surrogate escapes. It returns a -32700 or -32600 error.
func Validate(data []byte, maxDepth int) *Error {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	if !utf8.Valid(data) {
		return ParseError("invalid UTF-8")
	}
	if err := checkText(data, maxDepth); err != nil {
		return err
	}
	if !Valid(data) {
		return ParseError("invalid JSON")
	}
	return nil
}

// Member is one member of a JSON object.
type Member struct {
	Key   string
	Value json.RawMessage
}

var errNotObject = errors.New("not a JSON object")

// Members splits the JSON object obj into its members, in order, without decoding values.
// It refuses duplicate keys, and keys that differ from one of known only in letter case:
// encoding/json matches struct fields case-insensitively, so an upstream written in Go would
// read {"method":"a","METHOD":"b"} as method "b" while a strict reader sees "a".
// Input that is not one valid JSON value is refused.
func Members(obj []byte, known ...string) ([]Member, error) {
	if !Valid(obj) {
		return nil, errors.New("invalid JSON")
	}
	out := make([]Member, 0, 4)
	err := walkMembers(obj, known, func(key, val []byte) {
		out = append(out, Member{Key: string(key), Value: val})
	})
	return out, err
}

// walkMembers calls fn with each unescaped key and raw value of obj, refusing duplicates
// and case variants of known keys (see Members). It allocates only for escaped keys and
// objects of more than 16 members.
func walkMembers(obj []byte, known []string, fn func(key, val []byte)) error {
	var small [16][]byte
	seen := small[:0]
	var set map[string]struct{}
	return eachMember(obj, func(key, val []byte) error {
		if bytes.IndexByte(key, '\\') >= 0 {
			k, err := unquoteKey(key)
			if err != nil {
				return err
			}
			key = []byte(k)
		}
		for _, n := range known {
			if string(key) != n && strings.EqualFold(string(key), n) {
				return fmt.Errorf("member %q is not %q: keys are case-sensitive", key, n)
			}
		}
		if set == nil {
			for _, k := range seen {
				if bytes.Equal(k, key) {
					return fmt.Errorf("duplicate member %q", key)
				}
			}
			if len(seen) < cap(seen) {
				seen = append(seen, key)
			} else {
				// Large objects: a set keeps the check linear.
				set = make(map[string]struct{}, 2*len(seen))
				for _, k := range seen {
					set[string(k)] = struct{}{}
				}
			}
		}
		if set != nil {
			if _, dup := set[string(key)]; dup {
				return fmt.Errorf("duplicate member %q", key)
			}
			set[string(key)] = struct{}{}
		}
		fn(key, val)
		return nil
	})
}

// unquoteKey turns the body of a JSON string (without quotes) into Go text.
func unquoteKey(b []byte) (string, error) {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b), nil
	}
	q := make([]byte, 0, len(b)+2)
	q = append(append(append(q, '"'), b...), '"')
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return "", fmt.Errorf("bad key: %w", err)
	}
	return s, nil
}

// eachMember calls fn with each key body (raw, still escaped) and value of obj.
func eachMember(obj []byte, fn func(key, val []byte) error) error {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errNotObject
	}
	i = skipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return errNotObject
		}
		end, jerr := scanString(obj, i+1)
		if jerr != nil {
			return jerr
		}
		if end >= len(obj) {
			return errNotObject
		}
		key := obj[i+1 : end]
		i = skipWS(obj, end+1)
		if i >= len(obj) || obj[i] != ':' {
			return errNotObject
		}
		i = skipWS(obj, i+1)
		vend := skipValue(obj, i)
		if vend <= i {
			return errNotObject
		}
		if err := fn(key, obj[i:vend]); err != nil {
			return err
		}
		i = skipWS(obj, vend)
		if i >= len(obj) {
			return errNotObject
		}
		switch obj[i] {
		case ',':
			i = skipWS(obj, i+1)
		case '}':
			return nil
		default:
			return errNotObject
		}
	}
}

// eachElement calls fn with each element of the JSON array arr.
func eachElement(arr []byte, fn func(val []byte) error) error {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return errors.New("not a JSON array")
	}
	i = skipWS(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return nil
	}
	for {
		vend := skipValue(arr, i)
		if vend <= i {
			return errors.New("malformed JSON array")
		}
		if err := fn(arr[i:vend]); err != nil {
			return err
		}
		i = skipWS(arr, vend)
		if i >= len(arr) {
			return errors.New("malformed JSON array")
		}
		switch arr[i] {
		case ',':
			i = skipWS(arr, i+1)
		case ']':
			return nil
		default:
			return errors.New("malformed JSON array")
		}
	}
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

// skipValue returns the index just past the value starting at i (i itself when there is none).
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		end, err := scanString(b, i+1)
		if err != nil || end >= len(b) {
			return i
		}
		return end + 1
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := scanString(b, j+1)
				if err != nil || end >= len(b) {
					return i
				}
				j = end
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return i
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return j
			}
			j++
		}
		return j
	}
}
