package jsonrpc

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func nested(depth int) string {
	// A request whose params nest objects so that the whole message has the given depth.
	inner := strings.Repeat(`{"a":`, depth-1) + `1` + strings.Repeat(`}`, depth-1)
	return `{"jsonrpc":"2.0","id":1,"method":"m","params":` + inner + `}`
}

func TestParseEnvelope(t *testing.T) {
	type want struct {
		code    int    // 0: accepted
		msg     string // substring of the error message
		kind    string // request, notification, response
		batch   bool
		count   int
		errorID string // expected Error.ID on refusal
	}
	batchOK := Options{AllowBatch: true}
	cases := []struct {
		name string
		in   string
		opts Options
		want want
	}{
		{"request int id", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, Options{}, want{kind: "request", count: 1}},
		{"request string id", `{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"add"}}`, Options{}, want{kind: "request", count: 1}},
		{"negative int id", `{"jsonrpc":"2.0","id":-7,"method":"ping"}`, Options{}, want{kind: "request", count: 1}},
		{"largest safe int id", `{"jsonrpc":"2.0","id":9007199254740991,"method":"ping"}`, Options{}, want{kind: "request", count: 1}},
		{"smallest safe int id", `{"jsonrpc":"2.0","id":-9007199254740991,"method":"ping"}`, Options{}, want{kind: "request", count: 1}},
		// 2^53 and 2^53+1 are one double: a peer could answer one request with the other's id.
		{"int id 2^53 refused", `{"jsonrpc":"2.0","id":9007199254740992,"method":"ping"}`, Options{}, want{code: CodeInvalidRequest, msg: "2^53-1", errorID: "none"}},
		{"int id -2^53 refused", `{"jsonrpc":"2.0","id":-9007199254740992,"method":"ping"}`, Options{}, want{code: CodeInvalidRequest, msg: "2^53-1", errorID: "none"}},
		{"int id beyond int64 refused", `{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}`, Options{}, want{code: CodeInvalidRequest, msg: "2^53-1", errorID: "none"}},
		{"response id 2^53+1 refused", `{"jsonrpc":"2.0","id":9007199254740993,"result":{}}`, Options{}, want{code: CodeInvalidRequest, msg: "2^53-1", errorID: "none"}},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, Options{}, want{kind: "notification", count: 1}},
		{"params array", `{"jsonrpc":"2.0","id":1,"method":"m","params":[1,2]}`, Options{}, want{kind: "request", count: 1}},
		{"result response", `{"jsonrpc":"2.0","id":3,"result":{}}`, Options{}, want{kind: "response", count: 1}},
		{"error response", `{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"nope"}}`, Options{}, want{kind: "response", count: 1}},
		{"error response null id", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}`, Options{}, want{kind: "response", count: 1}},
		{"unknown extra member kept", `{"jsonrpc":"2.0","id":1,"method":"m","x-trace":"t"}`, Options{}, want{kind: "request", count: 1}},
		{"escaped key and value", `{"jsonrpc":"2.0","\u0069d":1,"method":"tools\/list"}`, Options{}, want{kind: "request", count: 1}},

		{"empty body", ``, Options{}, want{code: CodeParseError, msg: "empty", errorID: "none"}},
		{"not json", `{"jsonrpc":`, Options{}, want{code: CodeParseError, msg: "invalid JSON", errorID: "none"}},
		{"trailing garbage", `{"jsonrpc":"2.0","method":"m"} x`, Options{}, want{code: CodeParseError, errorID: "none"}},
		{"invalid utf8 in string", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\xff\"}", Options{}, want{code: CodeParseError, msg: "UTF-8", errorID: "none"}},
		{"invalid utf8 overlong", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xc0\xaf\"}", Options{}, want{code: CodeParseError, msg: "UTF-8", errorID: "none"}},
		{"lone high surrogate", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"s":"\ud800"}}`, Options{}, want{code: CodeParseError, msg: "surrogate", errorID: "none"}},
		{"lone low surrogate", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"s":"\uDC00x"}}`, Options{}, want{code: CodeParseError, msg: "surrogate", errorID: "none"}},
		{"high surrogate then non-low", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"s":"\ud800\u0041"}}`, Options{}, want{code: CodeParseError, msg: "surrogate", errorID: "none"}},
		{"surrogate pair ok", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"s":"\ud83d\ude00"}}`, Options{}, want{kind: "request", count: 1}},
		{"depth 64 ok", nested(64), Options{}, want{kind: "request", count: 1}},
		{"depth 65 refused", nested(65), Options{}, want{code: CodeInvalidRequest, msg: "deeper than 64", errorID: "none"}},
		{"depth inside strings ignored", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"s":"` + strings.Repeat("[{", 500) + `"}}`, Options{}, want{kind: "request", count: 1}},
		{"custom depth", nested(5), Options{MaxDepth: 4}, want{code: CodeInvalidRequest, msg: "deeper than 4", errorID: "none"}},

		{"missing jsonrpc", `{"id":1,"method":"m"}`, Options{}, want{code: CodeInvalidRequest, msg: "jsonrpc", errorID: "1"}},
		{"jsonrpc 1.0", `{"jsonrpc":"1.0","id":1,"method":"m"}`, Options{}, want{code: CodeInvalidRequest, msg: `"2.0"`, errorID: "1"}},
		{"jsonrpc number", `{"jsonrpc":2.0,"id":1,"method":"m"}`, Options{}, want{code: CodeInvalidRequest, msg: `"2.0"`, errorID: "1"}},
		{"id null request", `{"jsonrpc":"2.0","id":null,"method":"m"}`, Options{}, want{code: CodeInvalidRequest, msg: `"id"`, errorID: "none"}},
		{"id float", `{"jsonrpc":"2.0","id":1.5,"method":"m"}`, Options{}, want{code: CodeInvalidRequest, msg: `"id"`, errorID: "none"}},
		{"id exponent", `{"jsonrpc":"2.0","id":1e3,"method":"m"}`, Options{}, want{code: CodeInvalidRequest, msg: `"id"`, errorID: "none"}},
		{"id object", `{"jsonrpc":"2.0","id":{"a":1},"method":"m"}`, Options{}, want{code: CodeInvalidRequest, msg: `"id"`, errorID: "none"}},
		{"id bool", `{"jsonrpc":"2.0","id":true,"method":"m"}`, Options{}, want{code: CodeInvalidRequest, msg: `"id"`, errorID: "none"}},
		{"method empty", `{"jsonrpc":"2.0","id":1,"method":""}`, Options{}, want{code: CodeInvalidRequest, msg: "method", errorID: "1"}},
		{"method number", `{"jsonrpc":"2.0","id":"r","method":5}`, Options{}, want{code: CodeInvalidRequest, msg: "method", errorID: `"r"`}},
		{"params string", `{"jsonrpc":"2.0","id":1,"method":"m","params":"x"}`, Options{}, want{code: CodeInvalidRequest, msg: "params", errorID: "1"}},
		{"params null", `{"jsonrpc":"2.0","id":1,"method":"m","params":null}`, Options{}, want{code: CodeInvalidRequest, msg: "params", errorID: "1"}},
		{"request with result", `{"jsonrpc":"2.0","id":1,"method":"m","result":{}}`, Options{}, want{code: CodeInvalidRequest, errorID: "1"}},
		{"response both", `{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}`, Options{}, want{code: CodeInvalidRequest, msg: "exactly one", errorID: "1"}},
		{"response no id", `{"jsonrpc":"2.0","result":{}}`, Options{}, want{code: CodeInvalidRequest, msg: `"id"`, errorID: "none"}},
		{"result response null id", `{"jsonrpc":"2.0","id":null,"result":{}}`, Options{}, want{code: CodeInvalidRequest, msg: `"id"`, errorID: "none"}},
		{"error code float", `{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"x"}}`, Options{}, want{code: CodeInvalidRequest, msg: "code", errorID: "1"}},
		{"error without message", `{"jsonrpc":"2.0","id":1,"error":{"code":1}}`, Options{}, want{code: CodeInvalidRequest, msg: "message", errorID: "1"}},
		{"neither method nor result", `{"jsonrpc":"2.0","id":1}`, Options{}, want{code: CodeInvalidRequest, msg: "needs", errorID: "1"}},
		{"not an object", `"hello"`, Options{}, want{code: CodeInvalidRequest, msg: "object", errorID: "none"}},
		{"duplicate method", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}`, Options{}, want{code: CodeInvalidRequest, msg: "duplicate", errorID: "none"}},
		{"duplicate via escape", `{"jsonrpc":"2.0","id":1,"method":"a","\u006dethod":"b"}`, Options{}, want{code: CodeInvalidRequest, msg: "duplicate", errorID: "none"}},
		{"case variant of method", `{"jsonrpc":"2.0","id":1,"method":"tools/list","METHOD":"tools/call"}`, Options{}, want{code: CodeInvalidRequest, msg: "case-sensitive", errorID: "none"}},
		{"kelvin-sign fold of params", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{},\"\u212aey\":1,\"param\u017f\":{}}", Options{}, want{code: CodeInvalidRequest, msg: "case-sensitive", errorID: "none"}},

		{"batch refused by default", `[{"jsonrpc":"2.0","id":1,"method":"m"}]`, Options{}, want{code: CodeInvalidRequest, msg: "batches", batch: true, errorID: "none"}},
		{"batch allowed old era", `[{"jsonrpc":"2.0","id":1,"method":"m"},{"jsonrpc":"2.0","method":"n"}]`, batchOK, want{kind: "request", batch: true, count: 2}},
		{"empty batch", `[]`, batchOK, want{code: CodeInvalidRequest, msg: "empty batch", batch: true, errorID: "none"}},
		{"batch with bad element", `[{"jsonrpc":"2.0","id":1,"method":"m"},{"jsonrpc":"2.0","id":{},"method":"m"}]`, batchOK, want{code: CodeInvalidRequest, msg: "batch element 1", batch: true, errorID: "none"}},
		{"batch counts toward depth", `[` + nested(64) + `]`, batchOK, want{code: CodeInvalidRequest, msg: "deeper", batch: false, errorID: "none"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			msgs, batch, err := Parse([]byte(tc.in), tc.opts)
			if tc.want.code != 0 {
				g.Expect(err).NotTo(BeNil(), "want refusal")
				g.Expect(err.Code).To(Equal(tc.want.code), err.Message)
				g.Expect(err.Message).To(ContainSubstring(tc.want.msg))
				g.Expect(msgs).To(BeEmpty())
				g.Expect(batch).To(Equal(tc.want.batch))
				if tc.want.errorID == "none" {
					g.Expect(err.ID).To(BeNil())
				} else {
					g.Expect(string(err.ID)).To(Equal(tc.want.errorID))
				}
				return
			}
			g.Expect(err).To(BeNil())
			g.Expect(batch).To(Equal(tc.want.batch))
			g.Expect(msgs).To(HaveLen(tc.want.count))
			m := msgs[0]
			switch tc.want.kind {
			case "request":
				g.Expect(m.IsRequest()).To(BeTrue())
				g.Expect(m.IsNotification() || m.IsResponse()).To(BeFalse())
			case "notification":
				g.Expect(m.IsNotification()).To(BeTrue())
				g.Expect(m.IsRequest() || m.IsResponse()).To(BeFalse())
			case "response":
				g.Expect(m.IsResponse()).To(BeTrue())
				g.Expect(m.IsRequest() || m.IsNotification()).To(BeFalse())
			}
		})
	}
}

func TestParseFields(t *testing.T) {
	g := NewWithT(t)
	in := `{"jsonrpc":"2.0","id":"r1","method":"tools\/call","params":{"name":"add","arguments":{"a":1}}}`
	msgs, _, err := Parse([]byte(in), Options{})
	g.Expect(err).To(BeNil())
	m := msgs[0]
	g.Expect(m.Method).To(Equal("tools/call"))
	g.Expect(string(m.ID)).To(Equal(`"r1"`))
	g.Expect(string(m.Params)).To(Equal(`{"name":"add","arguments":{"a":1}}`))
	g.Expect(string(m.Raw)).To(Equal(in))

	msgs, _, err = Parse([]byte(`{"jsonrpc":"2.0","id":9,"error":{"code":-32000,"message":"boom","data":{"k":1}}}`), Options{})
	g.Expect(err).To(BeNil())
	g.Expect(msgs[0].Error.Code).To(Equal(-32000))
	g.Expect(msgs[0].Error.Message).To(Equal("boom"))
	g.Expect(msgs[0].Error.Data).To(BeEquivalentTo(json.RawMessage(`{"k":1}`)))

	msgs, batch, err := Parse([]byte(` [ {"jsonrpc":"2.0","id":1,"result":{"x":[1]}} , {"jsonrpc":"2.0","method":"n","params":[]} ] `), Options{AllowBatch: true})
	g.Expect(err).To(BeNil())
	g.Expect(batch).To(BeTrue())
	g.Expect(string(msgs[0].Result)).To(Equal(`{"x":[1]}`))
	g.Expect(string(msgs[1].Raw)).To(Equal(`{"jsonrpc":"2.0","method":"n","params":[]}`))
}

func TestBatchAllowed(t *testing.T) {
	g := NewWithT(t)
	g.Expect(BatchAllowed("2024-11-05")).To(BeTrue())
	g.Expect(BatchAllowed("2025-03-26")).To(BeTrue())
	g.Expect(BatchAllowed("2025-06-18")).To(BeFalse())
	g.Expect(BatchAllowed("2025-11-25")).To(BeFalse())
	g.Expect(BatchAllowed("")).To(BeFalse())
}

func TestErrorResponse(t *testing.T) {
	g := NewWithT(t)
	var got map[string]any
	g.Expect(json.Unmarshal(ErrorResponse(json.RawMessage(`7`), InvalidParams("bad")), &got)).To(Succeed())
	g.Expect(got).To(Equal(map[string]any{"jsonrpc": "2.0", "id": float64(7), "error": map[string]any{"code": float64(-32602), "message": "bad"}}))

	// nil id: the error's own id, else null.
	_, _, perr := Parse([]byte(`{"jsonrpc":"2.0","id":"q","method":""}`), Options{})
	g.Expect(string(ErrorResponse(nil, perr))).To(ContainSubstring(`"id":"q"`))
	g.Expect(string(ErrorResponse(nil, ParseError("x")))).To(ContainSubstring(`"id":null`))
	// Data that cannot be encoded is dropped, never a failure.
	e := InternalError("x")
	e.Data = func() {}
	g.Expect(json.Valid(ErrorResponse(nil, e))).To(BeTrue())
	g.Expect(e.Error()).To(Equal("jsonrpc error -32603: internal error: x"))
}

func TestEncodeHelpers(t *testing.T) {
	g := NewWithT(t)
	b, err := Response(json.RawMessage(`1`), json.RawMessage(`{"ok":true}`))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).To(Equal(`{"jsonrpc":"2.0","id":1,"result":{"ok":true}}`))
	b, err = Request(json.RawMessage(`"a"`), "ping", nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).To(Equal(`{"jsonrpc":"2.0","id":"a","method":"ping"}`))
	b, err = Notification("notifications/tools/list_changed", map[string]int{})
	g.Expect(err).NotTo(HaveOccurred())
	msgs, _, perr := Parse(b, Options{})
	g.Expect(perr).To(BeNil())
	g.Expect(msgs[0].IsNotification()).To(BeTrue())
	_, err = Response(nil, 1)
	g.Expect(err).To(HaveOccurred())
}

func TestSetID(t *testing.T) {
	g := NewWithT(t)
	in := []byte(`{"jsonrpc":"2.0", "id" : "client-7" ,"method":"tools/call","params":{"id":"keep"}}`)
	out, err := SetID(in, json.RawMessage(`42`))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(out)).To(Equal(`{"jsonrpc":"2.0", "id" : 42 ,"method":"tools/call","params":{"id":"keep"}}`))
	g.Expect(string(in)).To(ContainSubstring(`"client-7"`), "input untouched")
	_, err = SetID([]byte(`{"jsonrpc":"2.0","method":"n"}`), json.RawMessage(`1`))
	g.Expect(err).To(HaveOccurred())
}

func TestMembers(t *testing.T) {
	g := NewWithT(t)
	ms, err := Members([]byte(` { "a" : 1 , "b":[1,{"c":"}"}], "c\"d": "x" } `))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ms).To(Equal([]Member{{"a", json.RawMessage("1")}, {"b", json.RawMessage(`[1,{"c":"}"}]`)}, {`c"d`, json.RawMessage(`"x"`)}}))

	// Duplicates are found in large objects too (the set path).
	var sb strings.Builder
	sb.WriteString("{")
	for i := range 100 {
		sb.WriteString(`"k` + strings.Repeat("x", i) + `":1,`)
	}
	sb.WriteString(`"kxxxxx":2}`)
	_, err = Members([]byte(sb.String()))
	g.Expect(err).To(MatchError(ContainSubstring(`duplicate member "kxxxxx"`)))

	for _, bad := range []string{``, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1 "b":2}`, `{"a":"\ud800"}`} {
		_, err := Members([]byte(bad))
		g.Expect(err).To(HaveOccurred(), bad)
	}
}

func TestValidateIsLinear(t *testing.T) {
	// A megabyte of opening brackets is refused at the depth limit, not decoded.
	g := NewWithT(t)
	deep := []byte(strings.Repeat("[", 1<<20))
	err := Validate(deep, 64)
	g.Expect(err).NotTo(BeNil())
	g.Expect(err.Code).To(Equal(CodeInvalidRequest))
}

func TestDecodeStrict(t *testing.T) {
	g := NewWithT(t)
	v, err := DecodeStrict([]byte(` {"a":[1,2.5e3,"x\u00e9",true,false,null],"b":{"c":{}}} `))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(v).To(Equal(map[string]any{
		"a": []any{json.Number("1"), json.Number("2.5e3"), "xé", true, false, nil},
		"b": map[string]any{"c": map[string]any{}},
	}))

	many := `{` + strings.Repeat(`"k0":0,`, 0)
	for i := range 20 {
		many += fmt.Sprintf(`"key%d":%d,`, i, i)
	}
	for in, want := range map[string]string{
		`{"a":1,"a":2}`:                 `at /a: duplicate key`,
		`{"x":{"p/q":{"a":1,"A":2}}}`:   `at /x/p~1q/A: key "A" differs from key "a" only in letter case`,
		`[{"ok":1},{"s":1,"\u017f":2}]`: `at /1/ſ: key "ſ" differs from key "s"`,
		`{"k":1,"\u212a":2}`:            `differs from key "k"`,
		many + `"KEY7":1}`:              `at /KEY7: key "KEY7" differs from key "key7"`,
		many + `"key3":1}`:              `at /key3: duplicate key`,
		`{"a":`:                         `invalid JSON`,
	} {
		_, err := DecodeStrict([]byte(in))
		g.Expect(err).To(MatchError(ContainSubstring(want)), in)
	}
}

// Every pass is linear: a 4 MiB string of escapes (quadratic scanning would take hours)
// and 4 MiB of brackets inside strings finish well inside the deadline.
func TestScanningIsLinear(t *testing.T) {
	g := NewWithT(t)
	escapes := `{"jsonrpc":"2.0","id":1,"method":"m","params":{"s":"` + strings.Repeat(`\n\t\u00e9`, 1<<19) + `"}}`
	brackets := `{"jsonrpc":"2.0","id":1,"method":"m","params":{"s":"` + strings.Repeat(`[{`, 1<<21) + `"}}`
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, in := range []string{escapes, brackets} {
			_, _, err := Parse([]byte(in), Options{})
			g.Expect(err).To(BeNil())
			_, merr := Members([]byte(in))
			g.Expect(merr).NotTo(HaveOccurred())
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("parsing 4 MiB took more than 20s: not linear")
	}
}

func TestIDKey(t *testing.T) {
	g := NewWithT(t)
	g.Expect(IDKey([]byte(`1`))).To(Equal(IDKey([]byte(`1.0`))))
	g.Expect(IDKey([]byte(`0`))).To(Equal(IDKey([]byte(`-0`))), "one number")
	g.Expect(IDKey([]byte(`"1"`))).NotTo(Equal(IDKey([]byte(`1`))), "strings and numbers never collide")
	g.Expect(IDKey([]byte(`"\u0031"`))).To(Equal(IDKey([]byte(`"1"`))))
	g.Expect(IDKey([]byte(`"\u0061"`))).To(Equal(IDKey([]byte(`"a"`))))
	g.Expect(IDKey([]byte(`1.5`))).NotTo(Equal(IDKey([]byte(`1`))))
	g.Expect(IDKey([]byte(`-7`))).To(Equal("n-7"))
}

func TestFoldKeyIsUpperThenLower(t *testing.T) {
	for _, k := range []string{"", "path", "Path", "PATH", "p_a-th9", "\u212Aey", "Ke\u017Fs", "ÄÖü", "straße", "İstanbul", "ǅ"} {
		if got, want := FoldKey(k), strings.ToLower(strings.ToUpper(k)); got != want {
			t.Errorf("FoldKey(%q) = %q, want %q", k, got, want)
		}
	}
}
