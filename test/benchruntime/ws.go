package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// wsResult is the idle-WebSocket measurement.
type wsResult struct {
	want, open    int
	dropped       int64 // connections the runtime closed while they were held
	rssBefore     int64 // KiB
	rssAfter      int64 // KiB
	perConnKiB    float64
	dialTime      time.Duration
	firstErr      string
	clientRSSDiff int64 // KiB, the load generator's own growth (for context)
}

// holdIdleWebSockets opens n WebSockets to the runtime (bearer + Origin on the upgrade,
// subprotocol mcp), sends nothing, waits for the runtime to settle, and reads its RSS.
func holdIdleWebSockets(ctx context.Context, t *target, pk *pki, n, dialers int, hold time.Duration, whileHeld func(pid int)) wsResult {
	res := wsResult{want: n}
	pid := t.proc.pid()
	res.rssBefore, _ = rssKiB(pid)
	clientBefore, _ := rssKiB(selfPID())

	wsURL := "wss" + strings.TrimPrefix(t.url, "https")
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pk.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: false,
	}
	// No client Timeout: the dial context bounds the handshake, and a Timeout would cut the
	// upgraded connection.
	client := &http.Client{Transport: tr}
	holdCtx, release := context.WithCancel(ctx)
	defer release()

	var (
		mu      sync.Mutex
		conns   = make([]*websocket.Conn, 0, n)
		next    atomic.Int64
		dropped atomic.Int64
		errOnce sync.Once
		wg      sync.WaitGroup
	)
	start := time.Now()
	for range dialers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				c, resp, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{
					HTTPClient:      client,
					HTTPHeader:      t.header.Clone(),
					Subprotocols:    []string{"mcp"},
					CompressionMode: websocket.CompressionDisabled,
				})
				cancel()
				// The library owns the upgraded body; on failure it is a buffered copy.
				if resp != nil && resp.Body != nil {
					_ = resp.Body.Close()
				}
				if err != nil {
					status := 0
					if resp != nil {
						status = resp.StatusCode
					}
					errOnce.Do(func() { res.firstErr = fmt.Sprintf("dial (HTTP %d): %v", status, err) })
					continue
				}
				// CloseRead answers pings and notices a close by the runtime.
				rctx := c.CloseRead(holdCtx)
				go func() {
					<-rctx.Done()
					if holdCtx.Err() == nil {
						dropped.Add(1)
					}
				}()
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.dialTime = time.Since(start)
	res.open = len(conns)
	sleep(ctx, hold)
	res.rssAfter, _ = rssKiB(pid)
	clientAfter, _ := rssKiB(selfPID())
	res.clientRSSDiff = clientAfter - clientBefore
	res.dropped = dropped.Load()
	if whileHeld != nil {
		whileHeld(pid)
	}
	if res.open > 0 {
		res.perConnKiB = float64(res.rssAfter-res.rssBefore) / float64(res.open)
	}
	release()
	for _, c := range conns {
		_ = c.CloseNow()
	}
	return res
}
