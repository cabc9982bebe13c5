package upstream

import (
	"bufio"
	"errors"
	"io"
	"sync"
)

// errLineTooLong reports a line over the limit; it was read to its end and dropped.
var errLineTooLong = errors.New("line exceeds the size limit")

// prefixKeep is how much of an over-long line is kept, to find the id it answers.
const prefixKeep = 4096

// lineReader reads newline-delimited lines with a bounded length: an over-long line is
// consumed and dropped (only its first bytes are kept), never buffered whole.
type lineReader struct {
	r   *bufio.Reader
	max int
	// tail holds the last prefixKeep bytes of the last over-long line: a server that
	// writes the id last ({"result":…,"jsonrpc":"2.0","id":7}, as the TypeScript SDK does)
	// is answered from it (see idSuffix).
	tail []byte
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// streamReaders are the line readers of HTTP response streams, one per exchange or GET
// stream: pooled rather than allocated per response, and with a small buffer, since a
// session's GET stream holds one for its whole life (longer lines are assembled in next).
var streamReaders = sync.Pool{New: func() any { return &lineReader{r: bufio.NewReaderSize(nil, 4<<10)} }}

func getStreamReader(r io.Reader, max int) *lineReader {
	l := streamReaders.Get().(*lineReader)
	l.r.Reset(r)
	l.max = max
	return l
}

func putStreamReader(l *lineReader) {
	l.r.Reset(nil)
	streamReaders.Put(l)
}

// keepTail appends chunk to the tail, keeping its last prefixKeep bytes.
func (l *lineReader) keepTail(chunk []byte) {
	if len(chunk) >= prefixKeep {
		l.tail = append(l.tail[:0], chunk[len(chunk)-prefixKeep:]...)
		return
	}
	if over := len(l.tail) + len(chunk) - prefixKeep; over > 0 {
		l.tail = l.tail[:copy(l.tail, l.tail[over:])]
	}
	l.tail = append(l.tail, chunk...)
}

// next returns the next line without its line ending. For an over-long line it returns
// the kept prefix and errLineTooLong (its last bytes are in tail until the next call); the
// next call continues with the following line.
// The line may share the reader's buffer: it is valid until the next call (copy to keep).
func (l *lineReader) next() ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := l.r.ReadSlice('\n')
		if line == nil && !tooLong && err == nil && len(chunk) <= l.max+2 {
			return trimEOL(chunk), nil // the usual case: the whole line in the buffer, no copy
		}
		if !tooLong {
			if len(line)+len(chunk) > l.max+2 { // +2: the line ending is not counted
				tooLong = true
				l.tail = append(l.tail[:0], line[max(0, len(line)-prefixKeep):]...)
				line = append(line, chunk[:min(len(chunk), max(0, prefixKeep-len(line)))]...)
			} else {
				line = append(line, chunk...)
			}
		}
		if tooLong {
			l.keepTail(chunk)
		}
		switch {
		case err == nil:
			if tooLong {
				l.tail = trimEOL(l.tail)
				return line, errLineTooLong
			}
			return trimEOL(line), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			if tooLong {
				l.tail = trimEOL(l.tail)
				return line, errLineTooLong
			}
			if len(line) > 0 && errors.Is(err, io.EOF) {
				return trimEOL(line), nil // last line without a newline
			}
			return nil, err
		}
	}
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}
