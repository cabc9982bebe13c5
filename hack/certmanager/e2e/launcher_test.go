package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// launcher is one cert-manager-local process with its log in a file.
type launcher struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // exit status, valid once done is closed
}

// startLauncher runs the binary with the test kubeconfig and args; cleanup kills it if the
// test left it running and prints its log when the test failed.
func startLauncher(t *testing.T, args ...string) *launcher {
	t.Helper()
	l := &launcher{logPath: filepath.Join(t.TempDir(), "cert-manager-local.log"), done: make(chan struct{})}
	logFile, err := os.Create(l.logPath)
	if err != nil {
		t.Fatal(err)
	}
	l.cmd = exec.Command(launcherBin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	l.cmd.Stdout, l.cmd.Stderr = logFile, logFile
	if err := l.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", launcherBin, err)
	}
	go func() {
		l.err = l.cmd.Wait()
		_ = logFile.Close()
		close(l.done)
	}()
	t.Cleanup(func() {
		select {
		case <-l.done:
		default:
			_ = l.cmd.Process.Kill()
			<-l.done
		}
		if t.Failed() {
			l.dumpLog(t)
		}
	})
	return l
}

// stop sends SIGTERM and returns how long the process took to exit and its exit error.
func (l *launcher) stop(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-l.done:
		return time.Since(start), l.err
	case <-time.After(timeout):
		return time.Since(start), fmt.Errorf("still running %s after SIGTERM", timeout)
	}
}

// dumpLog prints the last lines of the launcher's log: the controllers' own account.
func (l *launcher) dumpLog(t *testing.T) {
	f, err := os.Open(l.logPath)
	if err != nil {
		t.Logf("reading the launcher log: %v", err)
		return
	}
	defer func() { _ = f.Close() }()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for s.Scan() {
		lines = append(lines, s.Text())
	}
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	t.Logf("cert-manager-local log (%s), last %d lines:\n%s", l.logPath, len(lines), strings.Join(lines, "\n"))
}

// exited fails the assertion as soon as the launcher has died, rather than timing out.
func (l *launcher) exited() error {
	select {
	case <-l.done:
		return fmt.Errorf("cert-manager-local exited: %v", l.err)
	default:
		return nil
	}
}

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// eventually polls f until it returns nil, failing fast if the launcher died.
func eventually(t *testing.T, l *launcher, timeout time.Duration, f func(ctx context.Context) error) {
	t.Helper()
	NewWithT(t).Eventually(func(ctx context.Context) error {
		if err := l.exited(); err != nil {
			return StopTrying(err.Error())
		}
		return f(ctx)
	}).WithContext(t.Context()).WithTimeout(timeout).WithPolling(100 * time.Millisecond).Should(Succeed())
}

var errNotYet = errors.New("not yet")
