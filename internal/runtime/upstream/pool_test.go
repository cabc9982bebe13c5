package upstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func sessionPID(s Session) int {
	m := s.(*session).m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.child == nil {
		return 0
	}
	return m.child.pid
}

func warmCount(u Upstream) int {
	p := u.(*pool)
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.warm)
}

func TestPerSessionModeGivesEachSessionItsOwnPrewarmedProcess(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	cfg := testConfig()
	cfg.SessionMode = "per-session"
	cfg.PoolSize = 2
	cfg.MaxSessions = 4
	pids := filepath.Join(t.TempDir(), "pids")
	argv := []string{"/bin/sh", "-c", `echo $$ >> "$0"; exec "$1"`, pids, everythingServer(t)}
	u, err := NewStdio(cfg, argv, testOptions())
	g.Expect(err).NotTo(HaveOccurred())
	startUpstream(t, u)
	started := func() []string {
		b, _ := os.ReadFile(pids)
		return strings.Fields(string(b))
	}
	g.Eventually(func() int { return warmCount(u) }).WithTimeout(5 * time.Second).Should(Equal(2))
	g.Expect(started()).To(HaveLen(2), "the pool starts PoolSize processes ahead of demand")

	clients := make([]*client, 3)
	seen := map[int]bool{}
	for i := range clients {
		clients[i] = newClient(t, u)
		pid := sessionPID(clients[i].s)
		g.Expect(seen).NotTo(HaveKey(pid), "session %d shares a process", i)
		seen[pid] = true
		clients[i].send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":` + initializeParams + `}`)
		clients[i].send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_x_mcp_header","arguments":{"region":"r` + fmt.Sprint(i) + `"}}}`)
	}
	for i, c := range clients {
		g.Expect(c.await(responseTo(`1`), 5*time.Second)).To(HaveKey("result"))
		g.Expect(text(c.await(responseTo(`2`), 5*time.Second))).To(Equal(fmt.Sprintf("region=r%d", i)))
	}
	// 3 in use + 1 warm = MaxSessions.
	g.Eventually(func() int { return warmCount(u) }).WithTimeout(5 * time.Second).Should(Equal(1))
	g.Expect(started()).To(HaveLen(4))

	fourth := newClient(t, u)
	_, err = u.NewSession(context.Background())
	g.Expect(errors.Is(err, ErrTooManySessions)).To(BeTrue(), "got %v", err)

	// A closed session's process is stopped, and its slot refills the pool.
	pid0 := sessionPID(clients[0].s)
	g.Expect(clients[0].s.Close()).To(Succeed())
	g.Eventually(func() bool { return alive(pid0) }).WithTimeout(3 * time.Second).Should(BeFalse())
	g.Eventually(func() int { return warmCount(u) }).WithTimeout(5 * time.Second).Should(Equal(1))
	g.Expect(started()).To(HaveLen(5))

	// A session whose process dies is ended (its client must start a new session).
	pid1 := sessionPID(clients[1].s)
	clients[1].send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_sampling","arguments":{"prompt":"x"}}}`)
	clients[1].await(method("sampling/createMessage"), 5*time.Second)
	g.Expect(syscall.Kill(-pid1, syscall.SIGKILL)).To(Succeed())
	g.Expect(errorCode(clients[1].await(responseTo(`3`), time.Second))).To(BeEquivalentTo(-32603))
	g.Eventually(clients[1].done).WithTimeout(time.Second).Should(BeClosed())
	// 2 in use (clients[2], fourth) leave room for a full pool again.
	g.Eventually(func() int { return warmCount(u) }).WithTimeout(5 * time.Second).Should(Equal(2))
	g.Expect(fourth.s.Close()).To(Succeed())
}
