package upstream

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkSharedChildToolsCall measures tools/call round trips through the multiplexer
// to one everything-server child, one session per parallel goroutine.
func BenchmarkSharedChildToolsCall(b *testing.B) {
	u, err := NewStdio(testConfig(), []string{everythingServer(b)}, testOptions())
	if err != nil {
		b.Fatal(err)
	}
	if err := u.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = u.Close(context.Background()) }()
	s, _ := u.NewSession(context.Background())
	if !s.(*session).m.waitReady(nil) {
		b.Fatal("upstream not ready")
	}
	_ = s.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		s, err := u.NewSession(context.Background())
		if err != nil {
			b.Error(err)
			return
		}
		defer func() { _ = s.Close() }()
		for i := 0; pb.Next(); i++ {
			msg := fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"test_simple_text"}}`, i)
			if err := s.Send(context.Background(), msg); err != nil {
				b.Error(err)
				return
			}
			if _, ok := <-s.Messages(); !ok {
				b.Error("session closed")
				return
			}
		}
	})
}
