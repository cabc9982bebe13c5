package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// NewStdio returns an upstream that runs command (or cfg.Command when command is empty)
// as a child speaking newline-delimited JSON-RPC on stdin/stdout, in its own process
// group. cfg.SessionMode "per-session" gives every session its own process from a
// pre-warmed pool (stopped when the session closes); otherwise one child serves every
// session, multiplexed by id rewriting.
//
// The shared child is started by Start and initialized by the runtime itself
// (Options.InitializeParams); clients' initialize requests are answered from the cached
// result and their notifications/initialized are not forwarded. A session closing never
// closes the child's stdin. A child that dies fails its in-flight requests at once
// ("upstream process exited; request not completed"), is restarted with exponential
// backoff and initialized again before requests go through. Server→client requests
// (sampling, elicitation, roots) and log messages (notifications/message) go to the session
// with the most recent call in flight; a log message written while no call is in flight is
// dropped. Servers that ask clients things or log during concurrent calls should use
// per-session mode, where every message of a process is its one session's. Progress goes
// by progress token, resource updates to the subscribed sessions, a URL elicitation's
// completion to the session it was sent to, list changes to every session. The child has
// one logging level: a client's logging/setLevel reaches it only to make it more verbose
// (a less verbose one is answered by the runtime), and each session gets only the messages
// at or above the level it set, so no session changes what another one sees.
func NewStdio(cfg config.Upstream, command []string, opts Options) (Upstream, error) {
	if len(command) == 0 {
		command = cfg.Command
	}
	if len(command) == 0 || command[0] == "" {
		return nil, errors.New("upstream: no command to run (give one after \"--\" or set upstream.command)")
	}
	command = append([]string(nil), command...)
	s := resolve(cfg, opts)
	if cfg.SessionMode == "per-session" {
		maxSessions := cfg.MaxSessions
		if maxSessions <= 0 {
			maxSessions = 16
		}
		if cfg.PoolSize < 0 || cfg.PoolSize > maxSessions {
			return nil, fmt.Errorf("upstream: poolSize %d must be between 0 and maxSessions %d", cfg.PoolSize, maxSessions)
		}
		return newPool(command, &s, cfg.PoolSize, maxSessions), nil
	}
	return &shared{m: newMux(command, &s, true)}, nil
}

// shared is one long-lived child with every session multiplexed onto it, and a second one,
// started on the first stateless-revision request, for those requests (see
// StatelessSessions).
type shared struct {
	m *mux

	mu        sync.Mutex
	closed    bool
	stateless *mux
}

func (u *shared) Start(context.Context) error { return u.m.start() }
func (u *shared) Ready() bool                 { return u.m.isReady() }

func (u *shared) Close(ctx context.Context) error {
	u.mu.Lock()
	u.closed = true
	st := u.stateless
	u.mu.Unlock()
	err := u.m.close(ctx)
	if st != nil {
		err = errors.Join(err, st.close(ctx))
	}
	return err
}

func (u *shared) NewSession(context.Context) (Session, error) {
	s, err := u.m.newSession(nil)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (u *shared) NewStatelessSession(context.Context) (Session, error) {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil, ErrClosed
	}
	m := u.stateless
	if m == nil {
		m = newMux(u.m.argv, u.m.s, true) // the same command and settings
		m.log = m.log.With("revision", "stateless")
		if err := m.start(); err != nil {
			u.mu.Unlock()
			return nil, err
		}
		u.stateless = m
	}
	u.mu.Unlock()
	s, err := m.newSession(nil)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// pool runs a process per session. poolSize processes are kept started and initialized
// ahead of demand; at most maxSessions processes (in use, warm or starting) exist at once.
type pool struct {
	argv        []string
	s           *settings
	poolSize    int
	maxSessions int

	mu       sync.Mutex
	warm     []*mux
	starting int
	inUse    int
	all      map[*mux]bool // live processes; true = serving a session
	closed   bool
	lastOK   bool
	kick     chan struct{}
	done     chan struct{}
	fillDone chan struct{}
	started  bool
}

func newPool(argv []string, s *settings, poolSize, maxSessions int) *pool {
	return &pool{
		argv: argv, s: s, poolSize: poolSize, maxSessions: maxSessions,
		all:      map[*mux]bool{},
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		fillDone: make(chan struct{}),
	}
}

func (p *pool) Start(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if !p.started {
		p.started = true
		go p.fill()
		p.wake()
	}
	return nil
}

// Ready: the last process started got initialized (with no pool to warm, nothing to check).
func (p *pool) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed && p.started && (p.lastOK || p.poolSize == 0)
}

func (p *pool) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *pool) totalLocked() int { return len(p.warm) + p.starting + p.inUse }

// fill keeps poolSize processes warm, one start at a time, backing off on failures.
func (p *pool) fill() {
	defer close(p.fillDone)
	delay := p.s.backoff.Min
	for {
		select {
		case <-p.kick:
		case <-p.done:
			return
		}
		for {
			p.mu.Lock()
			if p.closed || len(p.warm)+p.starting >= p.poolSize || p.totalLocked() >= p.maxSessions {
				p.mu.Unlock()
				break
			}
			p.starting++
			p.mu.Unlock()
			m, err := p.launch(context.Background())
			p.mu.Lock()
			p.starting--
			if err != nil {
				p.mu.Unlock()
				p.s.log.Error("starting a pooled upstream process failed", "err", err, "retryIn", delay)
				select {
				case <-time.After(delay):
				case <-p.done:
					return
				}
				delay = min(2*delay, p.s.backoff.Max)
				continue
			}
			delay = p.s.backoff.Min
			p.warm = append(p.warm, m)
			p.mu.Unlock()
		}
	}
}

// launch starts a process and waits until it is initialized.
func (p *pool) launch(ctx context.Context) (*mux, error) {
	m := newMux(p.argv, p.s, false)
	m.private = true
	m.onDead = func() { p.forget(m) }
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	p.all[m] = false
	p.mu.Unlock()
	if err := m.start(); err != nil {
		p.forget(m)
		p.setLastOK(false)
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.s.requestTimeout)
	defer cancel()
	if !m.waitReady(ctx.Done()) {
		_ = m.close(context.Background())
		p.setLastOK(false)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: process not initialized within %s", ErrNotReady, p.s.requestTimeout)
		}
		return nil, fmt.Errorf("%w: process exited before it was initialized", ErrNotReady)
	}
	p.setLastOK(true)
	return m, nil
}

func (p *pool) setLastOK(ok bool) {
	p.mu.Lock()
	p.lastOK = ok
	p.mu.Unlock()
}

// forget drops a process that has stopped, wherever it was, and tops the pool up.
func (p *pool) forget(m *mux) {
	p.mu.Lock()
	if inUse, ok := p.all[m]; ok {
		delete(p.all, m)
		if inUse {
			p.inUse--
		}
	}
	for i, w := range p.warm {
		if w == m {
			p.warm = append(p.warm[:i], p.warm[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	p.wake()
}

func (p *pool) NewSession(ctx context.Context) (Session, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		var m *mux
		if n := len(p.warm); n > 0 {
			m, p.warm = p.warm[0], p.warm[1:]
		} else {
			if p.totalLocked() >= p.maxSessions {
				p.mu.Unlock()
				return nil, fmt.Errorf("%w: all %d processes are in use", ErrTooManySessions, p.maxSessions)
			}
			p.starting++
			p.mu.Unlock()
			var err error
			m, err = p.launch(ctx)
			p.mu.Lock()
			p.starting--
			if err != nil {
				p.mu.Unlock()
				return nil, err
			}
		}
		if _, live := p.all[m]; !live {
			p.mu.Unlock()
			continue // died while warm
		}
		p.all[m] = true
		p.inUse++
		p.mu.Unlock()
		p.wake()
		s, err := m.newSession(func() { _ = m.close(context.Background()) })
		if err != nil {
			continue // died just now; its onDead already fixed the counts
		}
		return s, nil
	}
}

func (p *pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
	ms := make([]*mux, 0, len(p.all))
	for m := range p.all {
		ms = append(ms, m)
	}
	started := p.started
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = m.close(ctx)
		}()
	}
	wg.Wait()
	if started {
		select {
		case <-p.fillDone:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return ctx.Err()
}
