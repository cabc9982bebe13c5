package main

import (
	"context"
	"net/http"
	"time"
)

// firstResponse times a brand-new client: connect (TLS handshake included), initialize,
// notifications/initialized, and the first tools/call answered. Each sample uses a fresh
// transport so nothing is reused. It returns the successful samples and the failures.
func firstResponse(ctx context.Context, t *target, pk *pki, samples int) ([]time.Duration, int, string) {
	var out []time.Duration
	failures, firstErr := 0, ""
	for range samples {
		if ctx.Err() != nil {
			break
		}
		tr := newTransport(t, 1, pk)
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		start := time.Now()
		s, err := openSession(ctx, t, client)
		if err == nil {
			err = s.callTool(ctx)
		}
		d := time.Since(start)
		if s != nil {
			s.close(ctx)
		}
		tr.CloseIdleConnections()
		if err != nil {
			failures++
			if firstErr == "" {
				firstErr = err.Error()
			}
			continue
		}
		out = append(out, d)
		sleep(ctx, 20*time.Millisecond) // let the previous session's teardown settle
	}
	return out, failures, firstErr
}
