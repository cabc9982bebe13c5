package inlinehttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// server is an httptest server that counts the connections it accepted.
type server struct {
	*httptest.Server
	conns atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// fallbackCounter records that a request went to the fallback transport.
type fallbackCounter struct{ n atomic.Int64 }

func (f *fallbackCounter) RoundTrip(*http.Request) (*http.Response, error) {
	f.n.Add(1)
	return nil, errors.New("fallback")
}

func newClient(t *testing.T) (*http.Client, *Transport, *fallbackCounter) {
	t.Helper()
	fb := &fallbackCounter{}
	tr := &Transport{Fallback: fb}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, tr, fb
}

func post(t *testing.T, c *http.Client, url, body string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Method", r.Method)
	_, _ = fmt.Fprintf(w, "%s %s", r.Header.Get("Content-Type"), b)
}

func TestReusesOneConnectionForSequentialRequests(t *testing.T) {
	s := newServer(t, echo)
	c, tr, fb := newClient(t)
	for i := range 50 {
		code, got, h := post(t, c, s.URL+"/mcp", fmt.Sprintf(`{"i":%d}`, i))
		if want := fmt.Sprintf(`application/json {"i":%d}`, i); code != 200 || got != want || h.Get("X-Method") != "POST" {
			t.Fatalf("request %d: %d %q %v, want 200 %q", i, code, got, h, want)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Fatalf("50 sequential requests used %d connections, want 1", n)
	}
	if tr.IdleConnections() != 1 || fb.n.Load() != 0 {
		t.Fatalf("idle %d, fallback %d; want 1 idle, no fallback", tr.IdleConnections(), fb.n.Load())
	}
}

func TestEmptyBodiesReleaseTheConnection(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted) // Content-Length: 0
	})
	c, tr, _ := newClient(t)
	for range 5 {
		resp, err := c.Post(s.URL, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusAccepted || resp.Body != http.NoBody {
			t.Fatalf("got %d, body %T", resp.StatusCode, resp.Body)
		}
		if tr.IdleConnections() != 1 { // back in the pool before the body is even closed
			t.Fatalf("idle connections %d, want 1", tr.IdleConnections())
		}
		_ = resp.Body.Close()
	}
	if n := s.conns.Load(); n != 1 {
		t.Fatalf("used %d connections, want 1", n)
	}
}

func TestConnectionCloseIsNotReused(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	})
	c, tr, _ := newClient(t)
	for range 3 {
		if code, got, _ := post(t, c, s.URL, "x"); code != 200 || got != "bye" {
			t.Fatalf("got %d %q", code, got)
		}
	}
	if n := s.conns.Load(); n != 3 || tr.IdleConnections() != 0 {
		t.Fatalf("connections %d (want 3), idle %d (want 0)", n, tr.IdleConnections())
	}
}

func TestBodyClosedEarlyClosesTheConnection(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, _ = io.WriteString(w, strings.Repeat("x", 1<<20))
			return
		}
		_, _ = io.WriteString(w, "small")
	})
	c, tr, _ := newClient(t)
	resp, err := c.Get(s.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if _, err := resp.Body.Read(buf); !errors.Is(err, errClosedBody) {
		t.Fatalf("read after close: %v", err)
	}
	if tr.IdleConnections() != 0 {
		t.Fatal("a half-read connection went back to the pool")
	}
	if code, got, _ := post(t, c, s.URL, ""); code != 200 || got != "small" {
		t.Fatalf("next request: %d %q", code, got)
	}
	if n := s.conns.Load(); n != 2 {
		t.Fatalf("connections %d, want 2", n)
	}
}

// A server that closes an idle connection (idle timeout, restart) must not make the next
// request fail: the pool notices the close before writing.
func TestServerClosedIdleConnectionIsNotUsed(t *testing.T) {
	s := newServer(t, echo)
	c, tr, _ := newClient(t)
	post(t, c, s.URL, "1")
	s.CloseClientConnections() // closes the idle connection synchronously: the FIN is on its way
	for i := range 3 {
		if code, got, _ := post(t, c, s.URL, "2"); code != 200 || got != "application/json 2" {
			t.Fatalf("request %d after the server closed the connection: %d %q", i, code, got)
		}
	}
	if n := s.conns.Load(); n != 2 || tr.IdleConnections() != 1 {
		t.Fatalf("connections %d (want 2), idle %d (want 1)", n, tr.IdleConnections())
	}
}

// A response body is read from the socket as the server writes it (SSE streams).
func TestStreamsTheBody(t *testing.T) {
	release := make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "data: two\n\n")
	})
	defer close(release)
	c, _, _ := newClient(t)
	resp, err := c.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
}

func TestContextCancelEndsAWaitingExchange(t *testing.T) {
	block := make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-block:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = io.WriteString(w, "fast")
	})
	defer close(block)
	c, tr, _ := newClient(t)

	// Waiting for the response head.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/slow", strings.NewReader("x"))
	start := time.Now()
	_, err := c.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("got %v after %v, want the deadline after ~100ms", err, time.Since(start))
	}

	// Waiting in the body of a stream.
	s2 := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "start")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	ctx2, cancel2 := context.WithCancel(context.Background())
	req2, _ := http.NewRequestWithContext(ctx2, http.MethodGet, s2.URL, nil)
	resp, err := c.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel2)
	start = time.Now()
	_, err = io.ReadAll(resp.Body)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("reading a cancelled stream: %v after %v", err, time.Since(start))
	}
	_ = resp.Body.Close()
	if tr.IdleConnections() != 0 {
		t.Fatal("a cancelled connection went back to the pool")
	}
	if code, got, _ := post(t, c, s.URL+"/fast", ""); code != 200 || got != "fast" {
		t.Fatalf("after cancel: %d %q", code, got)
	}
}

func TestCloseFromAnotherGoroutineEndsARead(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	c, _, _ := newClient(t)
	resp, err := c.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, func() { _ = resp.Body.Close() })
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read of a closed body succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the read")
	}
}

func TestOtherSchemesGoToTheFallback(t *testing.T) {
	c, _, fb := newClient(t)
	_, err := c.Get("https://127.0.0.1:1/")
	if err == nil || !strings.Contains(err.Error(), "fallback") || fb.n.Load() != 1 {
		t.Fatalf("https request: %v, fallback calls %d", err, fb.n.Load())
	}
}

func TestDialErrorIsReturned(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	c, _, _ := newClient(t)
	if _, err := c.Get("http://" + addr + "/"); err == nil {
		t.Fatal("request to a closed port succeeded")
	}
}

func TestIdleConnectionsArePrunedAndBounded(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			time.Sleep(50 * time.Millisecond)
		}
		_, _ = io.WriteString(w, "ok")
	})
	fb := &fallbackCounter{}
	tr := &Transport{Fallback: fb, MaxIdlePerHost: 3, IdleTimeout: 200 * time.Millisecond}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for range 6 { // six at once: six connections, three kept
		wg.Go(func() { post(t, c, s.URL+"/hold", "") })
	}
	wg.Wait()
	if n := tr.IdleConnections(); n != 3 {
		t.Fatalf("idle %d, want MaxIdlePerHost 3", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr.IdleConnections() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := tr.IdleConnections(); n != 0 {
		t.Fatalf("idle %d after the idle timeout, want 0", n)
	}
}

func TestConcurrentRequests(t *testing.T) {
	s := newServer(t, echo)
	c, _, _ := newClient(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 100 {
				body := fmt.Sprintf("%d-%d", g, i)
				resp, err := c.Post(s.URL, "text/plain", strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err != nil || string(b) != "text/plain "+body {
					errs <- fmt.Errorf("got %q, %v for %s", b, err, body)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := s.conns.Load(); n > 16 {
		t.Fatalf("%d connections for 16 concurrent clients", n)
	}
}

func TestReadAfterEOFKeepsSayingEOF(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "last line without newline") })
	c, _, _ := newClient(t)
	resp, err := c.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "last line without newline" {
		t.Fatalf("%q, %v", b, err)
	}
	for range 2 {
		if n, err := resp.Body.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("read after EOF: %d, %v; want 0, io.EOF", n, err)
		}
	}
}

// golang/go#40747: a server that answers before reading the whole body and closes the
// connection gets its answer returned, not the write error.
func TestEarlyAnswerToALargeBody(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.CopyN(io.Discard, r.Body, 64<<10)
		w.Header().Set("Connection", "close")
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	c, tr, _ := newClient(t)
	for i := range 3 {
		resp, err := c.Post(s.URL, "application/json", strings.NewReader(strings.Repeat("x", 8<<20)))
		if err != nil {
			t.Fatalf("try %d: %v, want the server's 413", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "too large") {
			t.Fatalf("try %d: %d %q", i, resp.StatusCode, b)
		}
	}
	if tr.IdleConnections() != 0 {
		t.Fatal("a connection whose request was cut short went back to the pool")
	}
}

func TestContextCancelDuringBodyReadSaysCanceled(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "start")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	c, _, _ := newClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// rawServer answers every connection with the bytes reply writes, after reading a request head.
func rawServer(t *testing.T, reply func(w io.Writer)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = nc.Close() }()
				br := bufio.NewReader(nc)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				reply(nc)
			}()
		}
	}()
	return "http://" + l.Addr().String()
}

func TestResponseHeadIsBounded(t *testing.T) {
	c, _, _ := newClient(t)
	huge := rawServer(t, func(w io.Writer) {
		_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\n")
		line := "X-Big: " + strings.Repeat("a", 4000) + "\r\n"
		for range maxResponseHead/len(line) + 10 {
			if _, err := io.WriteString(w, line); err != nil {
				return
			}
		}
	})
	if _, err := c.Get(huge); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("a response head over %d bytes: %v", maxResponseHead, err)
	}
	hints := rawServer(t, func(w io.Writer) {
		for range 1000 {
			if _, err := io.WriteString(w, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"); err != nil {
				return
			}
		}
	})
	if _, err := c.Get(hints); err == nil || !strings.Contains(err.Error(), "1xx") {
		t.Fatalf("endless 1xx responses: %v", err)
	}
	two := rawServer(t, func(w io.Writer) {
		_, _ = io.WriteString(w, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	if code, got, _ := post(t, c, two, ""); code != 200 || got != "ok" {
		t.Fatalf("after two 1xx: %d %q", code, got)
	}
}

// A connection is reused after bodies of every framing, and never with stray bytes.
func TestReuseAcrossFramings(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			_, _ = io.WriteString(w, "part1")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "part2")
			w.Header().Set("X-Sum", "10")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			w.WriteHeader(http.StatusNotModified)
		default:
			_, _ = io.WriteString(w, "plain")
		}
	})
	c, tr, _ := newClient(t)
	resp, err := c.Get(s.URL + "/chunked")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(b) != "part1part2" || resp.Trailer.Get("X-Sum") != "10" {
		t.Fatalf("chunked body %q, trailer %v", b, resp.Trailer)
	}
	for _, path := range []string{"/nocontent", "/notmodified", "/plain"} {
		resp, err := c.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
	}
	req, _ := http.NewRequest(http.MethodHead, s.URL+"/plain", nil)
	if resp, err := c.Do(req); err != nil || resp.ContentLength != 5 {
		t.Fatalf("HEAD: %v %v", resp, err)
	} else {
		_ = resp.Body.Close()
	}
	if n := s.conns.Load(); n != 1 || tr.IdleConnections() != 1 {
		t.Fatalf("connections %d, idle %d; want one connection throughout", n, tr.IdleConnections())
	}

	stray := rawServer(t, func(w io.Writer) {
		_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
		time.Sleep(100 * time.Millisecond) // keep the connection open: only the stray bytes say it is unusable
	})
	c2, _, _ := newClient(t)
	if code, got, _ := post(t, c2, stray, ""); code != 200 || got != "ok" {
		t.Fatalf("%d %q", code, got)
	}
	// The stray bytes are either still buffered (the connection is closed at once) or
	// arrive later (the peek refuses it): never read as the next answer.
	if code, got, _ := post(t, c2, stray, ""); code != 200 || got != "ok" {
		t.Fatalf("second request: %d %q", code, got)
	}
}
