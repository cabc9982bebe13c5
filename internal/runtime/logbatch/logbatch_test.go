package logbatch

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/testutil"
)

func closeNow(t *testing.T, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestInfoLinesAreBatchedAndAWarningIsWrittenAtOnceAfterThem(t *testing.T) {
	g := NewWithT(t)
	var dst testutil.SyncBuffer
	log, out := NewJSONLogger(&dst)
	defer closeNow(t, out)

	start := time.Now()
	for i := range 100 {
		log.Info("Request", "n", i)
	}
	if written := dst.String(); time.Since(start) < Interval/2 { // else the machine stalled us
		g.Expect(written).To(BeEmpty(), "info lines wait for the batch (up to Interval)")
	}

	log.With("component", "upstream").Warn("Upstream exited", "code", 1)
	lines := bytes.Split(bytes.TrimSuffix([]byte(dst.String()), []byte("\n")), []byte("\n"))
	g.Expect(lines).To(HaveLen(101), "with every line queued before it, in order")
	for i, ln := range lines[:100] {
		var m map[string]any
		g.Expect(json.Unmarshal(ln, &m)).To(Succeed())
		g.Expect(m).To(HaveKeyWithValue("n", BeNumerically("==", i)))
	}
	var last map[string]any
	g.Expect(json.Unmarshal(lines[100], &last)).To(Succeed())
	g.Expect(last).To(HaveKeyWithValue("level", "WARN"))
	g.Expect(last).To(HaveKeyWithValue("component", "upstream"))

	log.Info("later")
	g.Eventually(dst.String, 2*time.Second, 5*time.Millisecond).
		Should(ContainSubstring(`"msg":"later"`), "a lone info line is written within Interval without Close")
}

func TestCloseWritesWhatIsQueuedAndIgnoresLaterLines(t *testing.T) {
	g := NewWithT(t)
	var dst testutil.SyncBuffer
	w := New(&dst)
	for i := range 10 {
		_, _ = w.Write([]byte(strconv.Itoa(i) + "\n"))
	}
	closeNow(t, w)
	g.Expect(dst.String()).To(Equal("0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n"))
	g.Expect(w.Append([]byte("late\n"))).To(BeFalse())
	n, err := w.Write([]byte("later\n"))
	g.Expect(n, err).To(Equal(6), "a log line never fails its caller")
	g.Expect(w.Written()).To(BeEquivalentTo(10))
}

// stuck blocks every Write until released.
type stuck struct{ release chan struct{} }

func (s stuck) Write(p []byte) (int, error) { <-s.release; return len(p), nil }

func TestAStuckDestinationDropsLinesInsteadOfBlocking(t *testing.T) {
	g := NewWithT(t)
	dst := stuck{release: make(chan struct{})}
	w := New(dst)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range QueueSize + 50 {
			_, _ = w.Write([]byte("x\n"))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write blocked on a stuck destination")
	}
	g.Expect(w.Dropped()).To(BeNumerically(">=", 50))
	close(dst.release)
	closeNow(t, w)
	g.Expect(w.Written() + w.Dropped()).To(BeEquivalentTo(QueueSize + 50))
}

func TestAFullBatchIsWrittenWithoutWaitingForTheInterval(t *testing.T) {
	g := NewWithT(t)
	var dst testutil.SyncBuffer
	w := newWriter(&dst, time.Hour)
	defer closeNow(t, w)
	for range flushLines + 10 {
		_, _ = w.Write([]byte("x\n"))
	}
	g.Eventually(w.Written, 5*time.Second, time.Millisecond).Should(BeNumerically(">=", flushLines))
}

func TestAWarningDoesNotHangOnAStuckDestination(t *testing.T) {
	g := NewWithT(t)
	dst := stuck{release: make(chan struct{})}
	defer close(dst.release)
	log, out := NewJSONLogger(dst)
	log.Info("first") // the writer takes it and stays stuck writing it
	returned := make(chan time.Duration)
	go func() {
		start := time.Now()
		log.Warn("upstream exited")
		returned <- time.Since(start)
	}()
	select {
	case took := <-returned:
		g.Expect(took).To(BeNumerically(">=", urgentWait/2), "it waited for its line first")
	case <-time.After(10 * time.Second):
		t.Fatal("Warn blocked on a stuck destination")
	}
	g.Expect(out.Dropped()).To(BeZero(), "the warning stays queued")
}

func TestTheQueueIsBoundedInBytes(t *testing.T) {
	g := NewWithT(t)
	dst := stuck{release: make(chan struct{})}
	w := New(dst)
	line := append(bytes.Repeat([]byte("a"), 1<<20), '\n')
	accepted := 0
	for range 20 {
		if w.Append(line) {
			accepted++
		}
	}
	g.Expect(accepted).To(BeNumerically("<=", MaxQueueBytes/len(line)))
	g.Expect(w.Dropped()).To(BeEquivalentTo(20 - accepted))
	close(dst.release)
	closeNow(t, w)
	g.Expect(w.Written()).To(BeEquivalentTo(accepted))
}
