package jsonrpc

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that Parse never panics and that whatever it accepts is read the same way
// by encoding/json (the decoder a Go upstream uses): same method, same id. The seeds in
// testdata/fuzz/FuzzParse run as a normal test.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, allowBatch bool) {
		msgs, batch, err := Parse(data, Options{AllowBatch: allowBatch, MaxDepth: 16})
		if err != nil {
			if msgs != nil {
				t.Fatalf("refusal with messages: %v", err)
			}
			if err.Code != CodeParseError && err.Code != CodeInvalidRequest {
				t.Fatalf("unexpected code %d", err.Code)
			}
			if err.ID != nil && !json.Valid(err.ID) {
				t.Fatalf("error id %q is not JSON", err.ID)
			}
			return
		}
		if !utf8.Valid(data) || !json.Valid(data) {
			t.Fatalf("accepted invalid input %q", data)
		}
		if batch && !allowBatch {
			t.Fatal("batch accepted while refused")
		}
		if len(msgs) == 0 {
			t.Fatal("accepted with no messages")
		}
		for _, m := range msgs {
			kinds := 0
			for _, k := range []bool{m.IsRequest(), m.IsNotification(), m.IsResponse()} {
				if k {
					kinds++
				}
			}
			if kinds != 1 {
				t.Fatalf("message %q is %d kinds", m.Raw, kinds)
			}
			var std struct {
				JSONRPC string
				ID      json.RawMessage
				Method  string
				Params  json.RawMessage
			}
			if uerr := json.Unmarshal(m.Raw, &std); uerr != nil {
				t.Fatalf("encoding/json refuses accepted message %q: %v", m.Raw, uerr)
			}
			if std.Method != m.Method || std.JSONRPC != "2.0" {
				t.Fatalf("encoding/json reads method %q, Parse %q in %q", std.Method, m.Method, m.Raw)
			}
			if !bytes.Equal(std.ID, m.ID) {
				t.Fatalf("encoding/json reads id %q, Parse %q in %q", std.ID, m.ID, m.Raw)
			}
			if !bytes.Equal(std.Params, m.Params) {
				t.Fatalf("encoding/json reads params %q, Parse %q in %q", std.Params, m.Params, m.Raw)
			}
			if m.IsRequest() {
				if out, err := SetID(m.Raw, json.RawMessage(`"x"`)); err != nil || !json.Valid(out) {
					t.Fatalf("SetID on %q: %v", m.Raw, err)
				}
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	inputs := map[string][]byte{
		"tools_call": []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"add","arguments":{"a":1.5,"b":2},"_meta":{"progressToken":"p-1"}}}`),
		"initialize": []byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{"listChanged":true},"sampling":{},"elicitation":{}},"clientInfo":{"name":"bench-client","title":"Bench","version":"1.0.0"}}}`),
		"4KiB_text":  []byte(`{"jsonrpc":"2.0","id":"r-9","method":"tools/call","params":{"name":"echo","arguments":{"text":"` + string(bytes.Repeat([]byte("lorem ipsum "), 340)) + `"}}}`),
	}
	for name, in := range inputs {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, _, err := Parse(in, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
