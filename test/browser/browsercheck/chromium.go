//go:build linux

package browsercheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// baseFlags are what Chromium needs on this kind of machine: headless as root, and none of
// its background connections to Google's services (a closed network refuses them).
var baseFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-default-apps", "--disable-extensions", "--mute-audio",
}

var devtoolsLine = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// chromium is one Chromium process group that this package started and will end.
type chromium struct {
	cmd    *exec.Cmd
	cdpURL string
	dir    string // holds the profile (p/) and TMPDIR (t/)
	stderr *tailBuffer
	exited chan struct{}
}

// chromiumFlags are the command line for target: a fresh profile, the DevTools endpoint on
// a free loopback port, the host mapping and the certificate pins.
func chromiumFlags(t Target, profile string) []string {
	flags := append([]string{}, baseFlags...)
	flags = append(flags, "--user-data-dir="+profile, "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")
	if t.ResolveTo != "" {
		flags = append(flags, fmt.Sprintf("--host-resolver-rules=MAP %s %s", t.hostname(), t.ResolveTo))
	}
	if len(t.TrustSPKI) > 0 {
		flags = append(flags, "--ignore-certificate-errors-spki-list="+strings.Join(t.TrustSPKI, ","))
	}
	return append(flags, "about:blank")
}

// startChromium runs Chromium in a process group of its own with a new temporary profile
// and waits (bounded by ctx) for its DevTools endpoint.
func startChromium(ctx context.Context, bin string, t Target) (*chromium, error) {
	// One directory holds the profile and Chromium's TMPDIR (it leaves its singleton socket
	// directory there when killed), so removing it leaves nothing behind. The socket's path,
	// TMPDIR/org.chromium.Chromium.XXXXXX/SingletonSocket, must fit a Unix socket address
	// (107 bytes), so a long TMPDIR is not used.
	base := os.TempDir()
	if len(base)+len("/browsercheck-1234567890/t/org.chromium.Chromium.XXXXXX/SingletonSocket") > 107 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "browsercheck-")
	if err != nil {
		return nil, fmt.Errorf("creating the Chromium profile directory: %w", err)
	}
	profile, tmp := filepath.Join(dir, "p"), filepath.Join(dir, "t")
	for _, d := range []string{profile, tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	c := &chromium{dir: dir, stderr: &tailBuffer{max: 16 << 10}, exited: make(chan struct{})}
	c.cmd = exec.Command(bin, chromiumFlags(t, profile)...)
	c.cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	// Its own process group: stop() ends the browser and every helper it forked, by group id.
	// Pdeathsig: should this process die without stop() (a test binary's timeout panic), the
	// kernel kills the browser, and its helpers follow their parent.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.cmd.Stdout = io.Discard
	// An *os.File, so Wait does not race the reader; EOF comes when the last holder exits.
	pr, pw, err := os.Pipe()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	c.cmd.Stderr = pw
	err = c.cmd.Start()
	_ = pw.Close()
	if err != nil {
		_ = pr.Close()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting Chromium %s: %w (install it with hack/chromium.sh)", bin, err)
	}
	found := make(chan string, 1)
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		defer func() { _ = pr.Close() }()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			c.stderr.add(line)
			if m := devtoolsLine.FindStringSubmatch(line); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		_ = c.cmd.Wait()
		close(c.exited)
	}()
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case c.cdpURL = <-found:
		return c, nil
	case <-c.exited:
		select { // its last words explain why
		case <-stderrDone:
		case <-time.After(2 * time.Second):
		}
		return nil, errors.Join(fmt.Errorf("chromium exited before its DevTools endpoint was up (%s); its stderr:\n%s", c.cmd.ProcessState, c.stderr), c.stop())
	case <-wait.Done():
		return nil, errors.Join(fmt.Errorf("chromium's DevTools endpoint was not up within 30s; its stderr:\n%s", c.stderr), c.stop())
	}
}

// stop ends the whole process group (SIGTERM, then SIGKILL after 5s), checks that none of
// its processes is left and removes the profile. Call it once.
func (c *chromium) stop() error {
	pgid := c.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
	}
	// Helpers may outlive the browser process for a moment; the group is ended either way
	// (while it has a live member its id cannot have been reused).
	if len(groupMembers(pgid)) > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	<-c.exited
	var errs []error
	if left := waitGroupGone(pgid, 5*time.Second); len(left) > 0 {
		errs = append(errs, fmt.Errorf("chromium processes %v of group %d still run after SIGKILL", left, pgid))
	}
	var err error
	for range 50 { // a dying helper may still write into the profile
		if err = os.RemoveAll(c.dir); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("removing the Chromium profile %s: %w", c.dir, err))
	}
	return errors.Join(errs...)
}

// waitGroupGone waits until process group pgid has no live (non-zombie) process and returns
// the pids still alive when wait runs out.
func waitGroupGone(pgid int, wait time.Duration) []int {
	deadline := time.Now().Add(wait)
	for {
		left := groupMembers(pgid)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// groupMembers lists the live processes of group pgid from /proc (zombies excluded: they
// are dead, only not yet reaped by their new parent).
func groupMembers(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// tailBuffer keeps the last max bytes of a process's output, line by line.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	lines []string
	size  int
}

func (b *tailBuffer) add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, line)
	b.size += len(line) + 1
	for b.size > b.max && len(b.lines) > 1 {
		b.size -= len(b.lines[0]) + 1
		b.lines = b.lines[1:]
	}
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}
