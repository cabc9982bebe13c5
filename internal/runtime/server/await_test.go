package server

import (
	"net/http/httptest"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// A POST's handler that finds its answer and a server message queued for its stream at
// the same moment writes both, the message first, on an SSE stream: the message was handed
// to this POST and nobody else would deliver it (select picks among ready cases at random,
// so without the final drain about half of these lost it).
func TestAServerMessageQueuedWithTheAnswerIsWritten(t *testing.T) {
	g := NewWithT(t)
	srv, _ := buildIdleServer(t)
	sess := openSession(srv, "s", nil, caller{transport: transportStreamable})
	const note = `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}`
	for range 40 {
		reply := newReplyTo(1)
		sink := &streamSink{ch: make(chan []byte, 64)}
		sink.ch <- []byte(note)
		reply.ch <- answer{out: []byte(`{"jsonrpc":"2.0","id":1,"result":{}}`)}
		req := httptest.NewRequest("POST", "/mcp", nil)
		req.Header.Set("Accept", bothAccepted)
		w := httptest.NewRecorder()
		srv.awaitResponses(w, req, sess, nil, false, 1, reply, sink, nil)
		body := w.Body.String()
		g.Expect(w.Header().Get("Content-Type")).To(Equal("text/event-stream"))
		g.Expect(body).To(ContainSubstring("notifications/message"))
		g.Expect(strings.Index(body, "notifications/message")).To(BeNumerically("<", strings.Index(body, `"id":1`)), "the message first")
	}
}
