package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It is 100 on every
// Linux architecture Go supports (the kernel fixes it for userspace ABI reasons).
const clockTicks = 100

// proc is one child process of the harness, its stderr kept in a file for post-mortems.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process exited
}

// startProc starts argv, with env added to the harness's environment, with stdout and
// stderr appended to dir/name.log.
func startProc(dir, name string, argv, env []string) (*proc, error) {
	logFile := filepath.Join(dir, name+".log")
	f, err := os.Create(logFile)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", logFile, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group: stopping the runtime also reaches its stdio child if it lingers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, argv[0], err)
	}
	p := &proc{name: name, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = f.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM to the process group, then SIGKILL after 5 s.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// tail returns the last lines of the process log, for error messages.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// procStat holds the fields of /proc/<pid>/stat the harness needs.
type procStat struct {
	ppid       int
	cpuTicks   int64 // utime + stime
	childTicks int64 // cutime + cstime (reaped children)
}

// parseStat parses /proc/<pid>/stat. The command name may contain spaces and parentheses,
// so fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("no ')' in stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): field k is f[k-3].
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("stat has %d fields after the name, want at least 15", len(f))
	}
	num := func(k int) int64 {
		v, err := strconv.ParseInt(f[k-3], 10, 64)
		if err != nil {
			return -1
		}
		return v
	}
	s := procStat{ppid: int(num(4)), cpuTicks: num(14) + num(15), childTicks: num(16) + num(17)}
	if s.ppid < 0 || s.cpuTicks < 0 {
		return procStat{}, errors.New("malformed stat numbers")
	}
	return s, nil
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// cpuTime returns the CPU time (user + system) a process used so far.
func cpuTime(pid int) time.Duration {
	s, err := readStat(pid)
	if err != nil {
		return 0
	}
	return time.Duration(s.cpuTicks) * time.Second / clockTicks
}

// rssKiB reads VmRSS from /proc/<pid>/status.
func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS line")
}

// childOf returns the first process whose parent is pid (the runtime's stdio server), or 0.
func childOf(pid int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := readStat(c); err == nil && s.ppid == pid {
			return c
		}
	}
	return 0
}

// freeAddr picks a free loopback port. Another process could take it before use; on this
// single-user bench machine that has not happened, and a start failure says so.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// waitTCP waits until addr accepts connections, or the process exits, or 15 s pass.
func waitTCP(ctx context.Context, p *proc, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %s", p.name, p.tail(10))
		case <-ctx.Done():
			return fmt.Errorf("%s did not listen on %s within 15s: %s", p.name, addr, p.tail(10))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitReady polls a runtime's /readyz until it answers 200.
func waitReady(ctx context.Context, p *proc, healthAddr string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get("http://" + healthAddr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %s", p.name, p.tail(10))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within 20s: %s", p.name, p.tail(10))
		case <-time.After(50 * time.Millisecond):
		}
	}
}
