package upstream

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	stderrLineMax = 16 << 10
	writeQueueLen = 1024
	// drainWait bounds reading the child's remaining output after it exited: a grandchild
	// in another process group holding stdout open must not delay failing its requests.
	drainWait = 300 * time.Millisecond
	// pipeBuf is POSIX PIPE_BUF on Linux: a write of at most this many bytes to a pipe is
	// atomic, so a non-blocking one either writes the whole line or nothing.
	pipeBuf = 4096
)

// child is one running stdio server process in its own process group.
type child struct {
	cmd     *exec.Cmd
	pid     int
	started time.Time
	log     *slog.Logger

	stdin  *os.File
	stdout *os.File
	writeq chan []byte
	// wmu is held while a line is written to stdin; queued counts lines handed to writeq
	// and not yet written or given up. Together they let a sender write directly (see
	// writeDirect) without overtaking a queued line.
	wmu    sync.Mutex
	queued atomic.Int64
	rawIn  syscall.RawConn

	exited   chan struct{} // closed when the process has exited
	done     chan struct{} // closed after exit, output drained, pipes closed
	exitErr  error
	stopOnce sync.Once
	stopping chan struct{}
}

// startChild starts argv with stdio pipes. onLine gets each stdout line (a copy it may keep);
// onTooLong gets the kept prefix of a line over maxLine bytes.
func startChild(argv []string, s *settings, onLine func([]byte), onTooLong func(prefix, tail []byte)) (*child, error) {
	if len(argv) == 0 {
		return nil, errors.New("no upstream command")
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating stdin pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(inR, inW)
		return nil, fmt.Errorf("creating stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(inR, inW, outR, outW)
		return nil, fmt.Errorf("creating stderr pipe: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		closeAll(inR, inW, outR, outW, errR, errW)
		return nil, fmt.Errorf("starting upstream %q: %w", argv[0], err)
	}
	closeAll(inR, outW, errW) // the child holds its own copies
	rawIn, err := inW.SyscallConn()
	if err != nil { // an *os.File pipe always has one
		closeAll(inW, outR, errR)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("stdin pipe of upstream %q: %w", argv[0], err)
	}
	c := &child{
		rawIn:    rawIn,
		cmd:      cmd,
		pid:      cmd.Process.Pid,
		started:  time.Now(),
		log:      s.log.With("pid", cmd.Process.Pid),
		stdin:    inW,
		stdout:   outR,
		writeq:   make(chan []byte, writeQueueLen),
		exited:   make(chan struct{}),
		done:     make(chan struct{}),
		stopping: make(chan struct{}),
	}
	readerDone := make(chan struct{})
	go c.writeLoop()
	go c.stderrLoop(errR, s)
	go func() {
		defer close(readerDone)
		c.readLoop(s.maxMsg, onLine, onTooLong)
	}()
	go func() {
		c.exitErr = cmd.Wait()
		close(c.exited)
		select {
		case <-c.stopping: // a stop gives the rest of the group its grace period
		default:
			// Orphaned grandchildren of a crashed server die with it.
			c.signal(syscall.SIGKILL)
		}
		_ = c.stdout.SetReadDeadline(time.Now().Add(drainWait))
		<-readerDone
		c.stopOnce.Do(func() { close(c.stopping) })
		_ = c.stdin.Close()
		_ = c.stdout.Close()
		close(c.done)
	}()
	return c, nil
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

func (c *child) readLoop(maxLine int, onLine func([]byte), onTooLong func(prefix, tail []byte)) {
	lr := newLineReader(c.stdout, maxLine)
	for {
		line, err := lr.next()
		switch {
		case errors.Is(err, errLineTooLong):
			c.log.Error("upstream message dropped: larger than the message size limit", "limit", maxLine)
			onTooLong(line, lr.tail)
		case err != nil:
			return
		case len(line) > 0:
			onLine(append([]byte(nil), line...))
		}
	}
}

func (c *child) stderrLoop(r *os.File, s *settings) {
	defer func() { _ = r.Close() }()
	lr := newLineReader(r, stderrLineMax)
	for {
		line, err := lr.next()
		if err != nil && !errors.Is(err, errLineTooLong) {
			return
		}
		if s.stderr != nil {
			_, _ = s.stderr.Write(append(line[:len(line):len(line)], '\n')) // a copy: line may share the buffer
			continue
		}
		c.log.Info("upstream stderr", "line", string(line))
	}
}

// writeLoop writes the queued lines to stdin; a child that stops reading blocks only this
// goroutine (and, once the queue is full, senders, who give up with their context).
func (c *child) writeLoop() {
	for {
		select {
		case line := <-c.writeq:
			c.wmu.Lock()
			_, err := c.stdin.Write(line)
			c.wmu.Unlock()
			c.queued.Add(-1)
			if err != nil {
				c.log.Warn("writing to upstream stdin failed", "err", err)
				return
			}
		case <-c.stopping:
			return
		}
	}
}

// writeDirect writes line to stdin on the caller's goroutine when that can neither block
// nor reorder: no line is queued, no other write is in progress, the line fits in one
// atomic pipe write and the pipe has room for it now. It reports whether the line was
// written; if not, nothing was, and the caller queues it. This saves the hand-off to the
// writer goroutine (a wake-up and a context switch) for every message of a child that
// keeps up with its input.
func (c *child) writeDirect(line []byte) bool {
	if len(line) > pipeBuf || c.queued.Load() != 0 || !c.wmu.TryLock() {
		return false
	}
	defer c.wmu.Unlock()
	if c.queued.Load() != 0 {
		return false
	}
	select {
	case <-c.stopping:
		return false
	default:
	}
	var n int
	var werr error
	err := c.rawIn.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), line)
		return true // never wait for room: the writer goroutine does that
	})
	if err != nil || werr != nil || n <= 0 {
		return false // EAGAIN (pipe full), closed, broken: the queue path decides
	}
	if n < len(line) { // not on a pipe; finish the line before anyone else writes
		if _, err := c.stdin.Write(line[n:]); err != nil {
			c.log.Warn("writing to upstream stdin failed", "err", err)
		}
	}
	return true
}

// enqueue writes a message directly or hands it to the writer, waiting at most until
// cancel is closed.
func (c *child) enqueue(msg []byte, cancel <-chan struct{}) error {
	line := make([]byte, 0, len(msg)+1)
	line = append(append(line, msg...), '\n')
	if c.writeDirect(line) {
		return nil
	}
	c.queued.Add(1)
	select {
	case c.writeq <- line:
		return nil
	case <-c.stopping:
		c.queued.Add(-1)
		return errChildGone
	case <-cancel:
		c.queued.Add(-1)
		return errEnqueueCanceled
	}
}

// tryEnqueue hands over a best-effort message (cancellations, answers to the child's own
// requests) without ever blocking the caller, who may be the stdout reader.
func (c *child) tryEnqueue(msg []byte) {
	line := append(append(make([]byte, 0, len(msg)+1), msg...), '\n')
	if c.writeDirect(line) {
		return
	}
	c.queued.Add(1)
	select {
	case c.writeq <- line:
	default:
		c.queued.Add(-1)
		c.log.Warn("upstream stdin queue full; message dropped")
	}
}

var (
	errChildGone       = errors.New("upstream process exited")
	errEnqueueCanceled = errors.New("gave up waiting for the upstream to read its input")
)

// signal sends sig to the child's whole process group. The group outlives its leader
// while any member runs, so this also reaches grandchildren after the child exited.
func (c *child) signal(sig syscall.Signal) {
	_ = syscall.Kill(-c.pid, sig)
}

// groupGone reports whether no process of the child's group is left running.
func (c *child) groupGone() bool { return !groupAlive(c.pid) }

// stop asks the child to exit: stdin closed and SIGTERM to the group; whatever of the
// group is left after grace (or when abort is closed) gets SIGKILL. It returns once the
// child is gone.
func (c *child) stop(grace time.Duration, abort <-chan struct{}) {
	c.stopOnce.Do(func() { close(c.stopping) })
	_ = c.stdin.Close()
	c.signal(syscall.SIGTERM)
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	poll := time.NewTicker(25 * time.Millisecond)
	defer poll.Stop()
	select {
	case <-c.exited:
		if c.awaitGroupGone(poll.C, deadline.C, abort) {
			<-c.done
			return
		}
	case <-deadline.C:
	case <-abort:
	}
	if !c.groupGone() {
		c.log.Warn("upstream did not exit after SIGTERM; killing it", "grace", grace)
		c.signal(syscall.SIGKILL)
		// SIGKILL is delivered asynchronously: the group's other processes may still be
		// running for a moment after the child itself was reaped. Bounded: a process stuck
		// in uninterruptible I/O dies only when the I/O ends.
		wait := time.NewTimer(time.Second)
		defer wait.Stop()
		c.awaitGroupGone(poll.C, wait.C, abort)
	}
	<-c.done
}

// awaitGroupGone checks on every poll tick whether anything of the child's group still
// runs: true once nothing does, false when until fires or abort is closed first.
func (c *child) awaitGroupGone(poll <-chan time.Time, until <-chan time.Time, abort <-chan struct{}) bool {
	for !c.groupGone() {
		select {
		case <-poll:
		case <-until:
			return false
		case <-abort:
			return false
		}
	}
	return true
}

// kill ends the child at once (failed initialization, session closed in per-session mode).
func (c *child) kill() {
	c.signal(syscall.SIGKILL)
}
