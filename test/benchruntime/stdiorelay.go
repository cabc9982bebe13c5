package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// runStdioRelay is the "stdio-relay" subcommand: the floor for target (d), as the bare
// ReverseProxy is for (c). It relays Streamable HTTP POSTs to one stdio MCP server with
// the least a relay of many clients onto one process must do: plain HTTP, no checks, the
// JSON-RPC id rewritten by splicing bytes, one reader goroutine routing answers by id,
// initialize answered from the child's first answer. Not a product: it assumes the load
// generator's message shapes.
//
//	benchruntime stdio-relay -listen ADDR -- COMMAND ARGS...
func runStdioRelay(args []string) int {
	fs := flag.NewFlagSet("stdio-relay", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	traceFile := fs.String("exectrace", "", "execution trace written at SIGTERM")
	tlsFiles := addTLSFlags(fs)
	sizeProcs := addProcsFlag(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: benchruntime stdio-relay -listen ADDR -- COMMAND ARGS...")
		return 2
	}
	sizeProcs.start()
	r, err := startRelay(fs.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "stdio-relay:", err)
		return 1
	}
	if *traceFile != "" {
		stopTrace, err := startExecTrace(*traceFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "stdio-relay:", err)
			return 1
		}
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
		go func() { <-term; stopTrace(); os.Exit(0) }()
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stdio-relay:", err)
		return 1
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	if err := tlsFiles.serve(srv, ln); err != nil {
		fmt.Fprintln(os.Stderr, "stdio-relay:", err)
		return 1
	}
	return 0
}

type relay struct {
	stdin   io.Writer
	wmu     sync.Mutex
	next    atomic.Int64
	mu      sync.Mutex
	waiting map[int64]chan []byte
	init    []byte // the child's initialize result
}

// relayMsg is the part of a message the relay reads.
type relayMsg struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
}

func startRelay(argv []string) (*relay, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &relay{stdin: stdin, waiting: map[int64]chan []byte{}}
	go r.readLoop(stdout)
	res, err := r.call(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+protocolVersion+`","capabilities":{},"clientInfo":{"name":"stdio-relay","version":"1"}}}`, 0)
	if err != nil {
		return nil, err
	}
	var m relayMsg
	if err := json.Unmarshal(res, &m); err != nil || m.Result == nil {
		return nil, fmt.Errorf("initialize answered %s", res)
	}
	r.init = m.Result
	if err := r.write([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *relay) write(msg []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	_, err := r.stdin.Write(append(msg, '\n'))
	return err
}

// call sends msg (whose id is upID) and waits for the answer with that id.
func (r *relay) call(msg string, upID int64) ([]byte, error) {
	ch := make(chan []byte, 1)
	r.mu.Lock()
	r.waiting[upID] = ch
	r.mu.Unlock()
	if err := r.write([]byte(msg)); err != nil {
		return nil, err
	}
	select {
	case res := <-ch:
		return res, nil
	case <-time.After(30 * time.Second):
		r.mu.Lock()
		delete(r.waiting, upID)
		r.mu.Unlock()
		return nil, errors.New("no answer within 30 s")
	}
}

func (r *relay) readLoop(stdout io.Reader) {
	br := bufio.NewReaderSize(stdout, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			fmt.Fprintln(os.Stderr, "stdio-relay: child output ended:", err)
			os.Exit(1)
		}
		var m relayMsg
		if json.Unmarshal(line, &m) != nil || m.ID == nil || m.Method != "" {
			continue // notifications and the child's own requests: not part of the load
		}
		id, err := strconv.ParseInt(string(m.ID), 10, 64)
		if err != nil {
			continue
		}
		r.mu.Lock()
		ch := r.waiting[id]
		delete(r.waiting, id)
		r.mu.Unlock()
		if ch != nil {
			ch <- line
		}
	}
}

func (r *relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch req.Method {
	case http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodPost:
	default:
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxResponse))
	if err != nil {
		return
	}
	var m relayMsg
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if m.ID == nil { // notifications/initialized: the relay initialized the child once
		w.WriteHeader(http.StatusAccepted)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if m.Method == "initialize" {
		w.Header().Set("Mcp-Session-Id", "bare")
		_, _ = fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, m.ID, r.init)
		return
	}
	up := r.next.Add(1)
	msg, ok := swapID(body, m.ID, []byte(strconv.FormatInt(up, 10)))
	if !ok {
		http.Error(w, "unexpected message shape", http.StatusBadRequest)
		return
	}
	res, err := r.call(string(msg), up)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	res, _ = swapID(bytes.TrimSpace(res), []byte(strconv.FormatInt(up, 10)), m.ID)
	_, _ = w.Write(res)
}

// swapID replaces the first `"id":old` member of msg with `"id":repl`.
func swapID(msg, old, repl []byte) ([]byte, bool) {
	key := append([]byte(`"id":`), old...)
	i := bytes.Index(msg, key)
	if i < 0 {
		return msg, false
	}
	out := make([]byte, 0, len(msg)+len(repl))
	out = append(out, msg[:i+5]...)
	out = append(out, repl...)
	return append(out, msg[i+len(key):]...), true
}
