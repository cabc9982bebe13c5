package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxDecodeDepth bounds DecodeStrict's recursion for input that did not come through Parse.
const maxDecodeDepth = 1000

// DecodeStrict decodes one JSON value into map[string]any, []any, string, json.Number,
// bool or nil (the shapes JSON Schema validators take). It refuses, naming the JSON pointer,
// objects with two keys that are equal or equal under case folding: a Go upstream decoding
// into a struct merges such keys (last wins, case-insensitively), so a validator reading the
// first would check a value the upstream never uses.
func DecodeStrict(data []byte) (any, error) {
	if !Valid(data) {
		return nil, errors.New("invalid JSON")
	}
	d := strictDecoder{}
	return d.value(bytes.TrimSpace(data))
}

type strictDecoder struct {
	path []string // keys and indexes to the current value, for errors only
}

func (d *strictDecoder) fail(format string, a ...any) error {
	var sb strings.Builder
	for _, tok := range d.path {
		sb.WriteByte('/')
		sb.WriteString(EscapePointer(tok))
	}
	at := sb.String()
	if at == "" {
		at = "(root)"
	}
	return fmt.Errorf("at %s: %s", at, fmt.Sprintf(format, a...))
}

func (d *strictDecoder) value(raw []byte) (any, error) {
	if len(d.path) > maxDecodeDepth {
		return nil, d.fail("nested too deeply")
	}
	switch raw[0] {
	case '{':
		return d.object(raw)
	case '[':
		arr := []any{}
		err := eachElement(raw, func(val []byte) error {
			d.path = append(d.path, strconv.Itoa(len(arr)))
			v, err := d.value(val)
			if err != nil {
				return err
			}
			d.path = d.path[:len(d.path)-1]
			arr = append(arr, v)
			return nil
		})
		return arr, err
	case '"':
		s, ok := jsonString(raw)
		if !ok {
			return nil, d.fail("bad string")
		}
		return s, nil
	case 't':
		return true, nil
	case 'f':
		return false, nil
	case 'n':
		return nil, nil
	}
	return json.Number(raw), nil
}

func (d *strictDecoder) object(raw []byte) (any, error) {
	obj := map[string]any{}
	var small [8]string
	keys := small[:0]            // small objects: pairwise fold comparison, no allocation
	var folded map[string]string // larger ones: a set of folded keys
	err := eachMember(raw, func(kb, val []byte) error {
		k, err := unquoteKey(kb)
		if err != nil {
			return err
		}
		d.path = append(d.path, k)
		if _, dup := obj[k]; dup {
			return d.fail("duplicate key")
		}
		if folded == nil {
			for _, prev := range keys {
				if strings.EqualFold(prev, k) || !(isASCII(prev) && isASCII(k)) && FoldKey(prev) == FoldKey(k) {
					return d.fail("key %q differs from key %q only in letter case", k, prev)
				}
			}
			keys = append(keys, k)
			if len(keys) > 8 {
				folded = make(map[string]string, 2*len(keys))
				for _, prev := range keys[:len(keys)-1] {
					folded[FoldKey(prev)] = prev
				}
			}
		}
		if folded != nil {
			if prev, clash := folded[FoldKey(k)]; clash {
				return d.fail("key %q differs from key %q only in letter case", k, prev)
			}
			folded[FoldKey(k)] = k
		}
		v, err := d.value(val)
		if err != nil {
			return err
		}
		d.path = d.path[:len(d.path)-1]
		obj[k] = v
		return nil
	})
	return obj, err
}

// FoldKey maps keys that strings.EqualFold (and encoding/json's field matching) treat as
// equal to one form; upper-then-lower also folds the Kelvin sign and the long s.
func FoldKey(k string) string {
	ascii, upper := true, false
	for i := 0; i < len(k); i++ {
		c := k[i]
		ascii = ascii && c < 0x80
		upper = upper || ('A' <= c && c <= 'Z')
	}
	switch {
	case ascii && !upper:
		return k
	case ascii: // upper-then-lower is lower for ASCII: one copy instead of two
		return strings.ToLower(k)
	}
	return strings.ToLower(strings.ToUpper(k))
}

// isASCII: for ASCII keys strings.EqualFold and FoldKey agree, so FoldKey need not copy them.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// EscapePointer escapes one JSON Pointer (RFC 6901) reference token.
func EscapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}
