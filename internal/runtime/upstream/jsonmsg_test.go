package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestParseEnvelope(t *testing.T) {
	cases := []struct {
		name   string
		msg    string
		kind   string // request, notification, response, none
		id     string
		method string
		err    string
	}{
		{"request number id", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, "request", `1`, "ping", ""},
		{"request string id kept raw", `{"id":"a\u0062","jsonrpc":"2.0","method":"tools/call","params":{}}`, "request", `"a\u0062"`, "tools/call", ""},
		{"whitespace", " {\n \"method\" : \"x\" ,\n\"id\": -3 }", "request", `-3`, "x", ""},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, "notification", "", "notifications/initialized", ""},
		{"result", `{"jsonrpc":"2.0","id":"s","result":{}}`, "response", `"s"`, "", ""},
		{"error", `{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"m"}}`, "response", `2`, "", ""},
		{"null id error", `{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}`, "none", "", "", ""},
		{"nested keys ignored", `{"params":{"id":9,"method":"no"},"id":1,"method":"yes"}`, "request", `1`, "yes", ""},
		{"escaped key", `{"\u0069d":5,"method":"m"}`, "request", `5`, "m", ""},
		{"duplicate id", `{"id":1,"id":2,"method":"m"}`, "", "", "", "duplicate"},
		{"duplicate method", `{"id":1,"method":"a","method":"b"}`, "", "", "", "duplicate"},
		{"object id", `{"id":{},"method":"m"}`, "", "", "", "string or a number"},
		{"bool id", `{"id":true,"method":"m"}`, "", "", "", "string or a number"},
		{"method not string", `{"id":1,"method":3}`, "", "", "", "method"},
		{"method a long number", `{"id":1,"method":123}`, "", "", "", "method"},
		{"method a bool", `{"id":1,"method":true}`, "", "", "", "method"},
		{"escaped method", `{"id":1,"method":"tools\/c\u0061ll"}`, "request", `1`, "tools/call", ""},
		{"empty method", `{"id":1,"method":""}`, "", "", "", "method"},
		{"array", `[{"id":1,"method":"m"}]`, "", "", "", "not a JSON-RPC message object"},
		{"invalid JSON", `{"id":1,`, "", "", "", "invalid JSON"},
		{"trailing garbage", `{"id":1,"method":"m"} x`, "", "", "", "invalid JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e, err := parseEnvelope([]byte(tc.msg))
			if tc.err != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.err)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			kind := "none"
			switch {
			case e.isRequest():
				kind = "request"
			case e.isNotification():
				kind = "notification"
			case e.isResponse():
				kind = "response"
			}
			g.Expect(kind).To(Equal(tc.kind))
			g.Expect(e.method).To(Equal(tc.method))
			if tc.id != "" {
				g.Expect(string(e.idRaw())).To(Equal(tc.id))
			}
		})
	}
}

func TestRewritingKeepsEverythingElseByteForByte(t *testing.T) {
	g := NewWithT(t)
	msg := []byte(`{"params": {"_meta" : {"progressToken":"t<1>","x":[1,{"y":"}"}]}, "name":"a\"b"}, "id": "q\u00e9", "method":"tools/call"}`)
	e, err := parseEnvelope(msg)
	g.Expect(err).NotTo(HaveOccurred())
	tok, ok := path(e.raw, e.params, "_meta", "progressToken")
	g.Expect(ok).To(BeTrue())
	g.Expect(string(e.get(tok))).To(Equal(`"t<1>"`))
	// Later span first, as the relay does.
	out := splice(e.raw, e.id, []byte("17"))
	out = splice(out, tok, []byte("18"))
	g.Expect(string(out)).To(Equal(`{"params": {"_meta" : {"progressToken":18,"x":[1,{"y":"}"}]}, "name":"a\"b"}, "id": 17, "method":"tools/call"}`))
	g.Expect(json.Valid(out)).To(BeTrue())

	_, ok = path(e.raw, e.params, "_meta", "missing")
	g.Expect(ok).To(BeFalse())
	_, ok = path(e.raw, e.params, "name", "deeper") // not an object
	g.Expect(ok).To(BeFalse())
}

func TestBuiltMessagesAreValidJSON(t *testing.T) {
	g := NewWithT(t)
	for _, m := range [][]byte{
		errorResponse([]byte(`"x\u0000"`), -32603, "quote \" and newline \n"),
		resultResponse([]byte(`12`), []byte(`{"a":1}`)),
		request(3, "initialize", DefaultInitializeParams),
		notification("notifications/initialized", nil),
		cancelled(9, "timed out"),
	} {
		g.Expect(json.Valid(m)).To(BeTrue(), string(m))
		_, err := parseEnvelope(m)
		g.Expect(err).NotTo(HaveOccurred(), string(m))
	}
	g.Expect(string(errorResponse([]byte(`"x\u0000"`), -32603, "m"))).To(HavePrefix(`{"jsonrpc":"2.0","id":"x\u0000",`))
}

func TestOneLineRemovesFramingNewlines(t *testing.T) {
	g := NewWithT(t)
	out, err := oneLine([]byte("{\n  \"id\": \"a\\nb\",\r\n  \"method\": \"m\"\n}"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(out)).To(Equal(`{"id":"a\nb","method":"m"}`))
	same := []byte(`{"id":1}`)
	out, _ = oneLine(same)
	g.Expect(&out[0]).To(BeIdenticalTo(&same[0]), "a one-line message is not copied")
}

func TestIDPrefix(t *testing.T) {
	cases := []struct {
		prefix string
		id     string
	}{
		{`{"jsonrpc":"2.0","id":12,"result":{"x":"aaaa`, `12`},
		{`{"jsonrpc":"2.0","id":"s-1","result":`, `"s-1"`},
		{`{"result":{"a":[1,2]},"id":5}`, `5`},
		{`{"jsonrpc":"2.0","id":12`, ``},        // the id may be cut off
		{`{"jsonrpc":"2.0","result":{"aaa`, ``}, // id after the cut
		{`[{"id":1}]`, ``},
	}
	for _, tc := range cases {
		checkID(t, idPrefix, tc.prefix, tc.id)
	}
}

// checkID runs an id reader on in: want is the id it should find, "" none.
func checkID(t *testing.T, read func([]byte) ([]byte, bool), in, want string) {
	t.Helper()
	id, ok := read([]byte(in))
	switch {
	case want == "" && ok:
		t.Errorf("%s: got id %s, want none", in, id)
	case want != "" && (!ok || string(id) != want):
		t.Errorf("%s: got %q %v, want %s", in, id, ok, want)
	}
}

func TestIDSuffix(t *testing.T) {
	cases := []struct {
		tail string
		id   string
	}{
		{`aaaa"},"jsonrpc":"2.0","id":7}`, `7`},
		{`aaaa"},"jsonrpc":"2.0","id" : -3 }` + "\r", `-3`},
		{`aa"},"id":"a\"b"}`, `"a\"b"`}, // an escaped quote inside
		{`aa"},"id":"a\\"}`, `"a\\"`},   // an escaped backslash before the closing quote
		{`{"id":5}`, `5`},
		{`aa"},"jsonrpc":"2.0"}`, ``}, // id not last
		{`aa","x":{"id":5}}`, ``},     // a nested object's id
		{`aa \"id\":5}"}`, ``},        // inside a string
		{`aaa"id":5}`, ``},            // not preceded by , or {
		{`,"id":1.5}`, ``},            // not an integer or a string
		{`,"id":7`, ``},               // no closing brace
	}
	for _, tc := range cases {
		checkID(t, idSuffix, tc.tail, tc.id)
	}
}

func TestLineReaderBoundsLines(t *testing.T) {
	g := NewWithT(t)
	long := strings.Repeat("y", 10000)
	lr := newLineReader(strings.NewReader("short\r\n"+long+"\nnext\nlast-no-newline"), 100)
	line, err := lr.next()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(line)).To(Equal("short"))
	line, err = lr.next()
	g.Expect(errors.Is(err, errLineTooLong)).To(BeTrue())
	g.Expect(len(line)).To(BeNumerically("<=", prefixKeep))
	g.Expect(len(lr.tail)).To(BeNumerically(">=", prefixKeep-2), "the line's last bytes, without its ending")
	g.Expect(long).To(HaveSuffix(string(lr.tail)))
	line, err = lr.next()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(line)).To(Equal("next"), "reading resumes after the dropped line")
	line, err = lr.next()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(line)).To(Equal("last-no-newline"))
	_, err = lr.next()
	g.Expect(err).To(MatchError(io.EOF))
}

func TestReadSSE(t *testing.T) {
	g := NewWithT(t)
	s := resolve(testConfig(), testOptions())
	stream := ": keep-alive\n\n" +
		"id: 1\ndata: {\"a\":1}\n\n" +
		"event: message\nid: 2\ndata: {\"b\":\ndata: 2}\n\n" +
		"event: other\ndata: {\"ignored\":true}\n\n" +
		"data: " + strings.Repeat("z", 300) + "\n\n" + // over the limit: dropped
		"id: 3\ndata:{\"c\":3}\n\n"
	var got []string
	last, err := readSSE(strings.NewReader(stream), 200, func(data []byte, _ string) {
		got = append(got, string(bytes.Clone(data)))
	}, &s)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal([]string{`{"a":1}`, "{\"b\":\n2}", `{"c":3}`}))
	g.Expect(last).To(Equal("3"))
}
