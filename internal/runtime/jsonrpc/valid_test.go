package jsonrpc

import (
	"encoding/json"
	"strings"
	"testing"
)

// validCases are seeds for FuzzValid and the cases of TestValidAgreesWithEncodingJSON.
var validCases = []string{
	``, ` `, `{}`, `[]`, ` { } `, `[ ]`, `{"a":1}`, `{"a" : [1, 2.5, -0, -0.0e+1, 1E9, true, false, null, "x"]}`,
	`"\u00e9\n\t\"\\\/\b\f\r"`, `"é"`, "\"\xff\"", "\"\x1f\"", `"\u12"`, `"\u12G4"`, `"\x"`, `"abc`,
	`01`, `-`, `-a`, `1.`, `1.e5`, `1e`, `1e+`, `.5`, `+1`, `0x1`, `1 2`, `[1,]`, `{"a":1,}`, `{,}`, `[,1]`,
	`{"a"}`, `{"a":}`, `{1:2}`, `{"a":1 "b":2}`, `[1 2]`, `tru`, `nul`, `falsey`, `truex`, `[true]x`,
	`{"a":{"b":[{"c":null}]}}`, `]`, `}`, `[}`, `{]`, `[[[]]]`, `[[[]]`, "\t\r\n[1]\n", "[1]\x00",
	`{"a":"b"}}`, `"\ud800"`, `123456789012345678901234567890`, `-9.99e-999`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
	strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
}

func TestValidAgreesWithEncodingJSON(t *testing.T) {
	for _, c := range validCases {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%.40q) = %v, json.Valid says %v", c, got, want)
		}
	}
}

// FuzzValid holds Valid to json.Valid on any input.
func FuzzValid(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := Valid(data), json.Valid(data); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid says %v", data, got, want)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	msg := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"json_schema_2020_12_tool","arguments":{"name":"Ada","age":36,"email":"ada@example.com","tags":["a","b"],"address":{"street":"1 Main","city":"X"}}}}`)
	for _, impl := range []struct {
		name  string
		valid func([]byte) bool
	}{{"encoding/json", json.Valid}, {"jsonrpc", Valid}} {
		b.Run(impl.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if !impl.valid(msg) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
