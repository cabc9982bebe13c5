package mediatype

import (
	"mime"
	"testing"
)

func TestOfAgreesWithParseMediaType(t *testing.T) {
	for _, v := range []string{
		"application/json", "text/event-stream", "Application/JSON", "application/json; charset=utf-8",
		" application/json", "application/json;", "text/event-stream;charset=UTF-8", "", "application/",
		"application/json; charset=\"", "multipart/form-data; boundary=x",
	} {
		want, _, _ := mime.ParseMediaType(v)
		if got := Of(v); got != want {
			t.Errorf("Of(%q) = %q, mime.ParseMediaType says %q", v, got, want)
		}
	}
}

func BenchmarkOf(b *testing.B) {
	for _, v := range []string{"application/json", "application/json; charset=utf-8"} {
		b.Run(v, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = Of(v)
			}
		})
	}
}
