package upstream

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// TestStdinKeepsOrderWhetherWrittenDirectlyOrQueued writes lines of mixed sizes to a child
// that does not read at first, so the pipe fills and lines go through the writer queue, and
// then to one that reads: every line arrives whole and in order, and no sender blocks.
func TestStdinKeepsOrderWhetherWrittenDirectlyOrQueued(t *testing.T) {
	g := NewWithT(t)
	out := filepath.Join(t.TempDir(), "stdin.txt")
	s := resolve(config.Upstream{}, testOptions())
	c, err := startChild([]string{"/bin/sh", "-c", `sleep 0.5; exec cat > "$0"`, out}, &s, func([]byte) {}, func(_, _ []byte) {})
	g.Expect(err).NotTo(HaveOccurred())
	defer c.stop(time.Second, nil)

	var want bytes.Buffer
	send := func(i int) {
		size := 100
		if i%7 == 0 {
			size = pipeBuf + 500 // never written directly
		}
		msg := fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", size))
		want.WriteString(msg + "\n")
		g.Expect(c.enqueue([]byte(msg), nil)).To(Succeed())
	}
	start := time.Now()
	for i := range 400 { // ~200 KiB: more than a pipe holds while the child sleeps
		send(i)
	}
	g.Expect(time.Since(start)).To(BeNumerically("<", 400*time.Millisecond), "senders did not wait for the child")
	g.Expect(c.queued.Load()).To(BeNumerically(">", 0), "the full pipe sent lines to the queue")

	g.Eventually(c.queued.Load, 5*time.Second, 10*time.Millisecond).Should(BeZero())
	// The child reads now: small lines go directly, large ones through the queue.
	g.Expect(c.writeDirect([]byte("{\"direct\":true}\n"))).To(BeTrue())
	want.WriteString("{\"direct\":true}\n")
	g.Expect(c.writeDirect(append(bytes.Repeat([]byte("y"), pipeBuf), '\n'))).To(BeFalse(), "over PIPE_BUF")
	for i := 400; i < 450; i++ {
		send(i)
	}
	g.Eventually(func() bool {
		got, _ := os.ReadFile(out)
		return bytes.Equal(got, want.Bytes())
	}, 5*time.Second, 20*time.Millisecond).Should(BeTrue(), "every line arrived whole and in order")
}
