package jsonrpc

// maxValidDepth is encoding/json's nesting limit, which Valid keeps.
const maxValidDepth = 10000

// Valid reports whether data is one JSON value with only whitespace around it, exactly as
// json.Valid does (bytes ≥ 0x80 in strings are not checked as UTF-8 here either; Validate
// does that). It is one pass without encoding/json's per-byte state functions: the
// runtime checks every message it relays, and json.Valid was the largest part of that.
func Valid(data []byte) bool {
	var small [32]byte
	open := small[:0] // the containers around i: '{' or '['
	i := skipWS(data, 0)
	for {
		// A value starts at i.
		if i >= len(data) {
			return false
		}
		switch c := data[i]; c {
		case '{', '[':
			if len(open) == maxValidDepth {
				return false
			}
			open = append(open, c)
			i = skipWS(data, i+1)
			if i < len(data) && data[i] == c+2 { // '}' and ']' follow their openers by two
				open = open[:len(open)-1]
				i++
				break
			}
			if c == '{' {
				var ok bool
				if i, ok = member(data, i); !ok {
					return false
				}
			}
			continue
		case '"':
			var ok bool
			if i, ok = validString(data, i); !ok {
				return false
			}
		case 't':
			if !hasLiteral(data, i, "true") {
				return false
			}
			i += 4
		case 'f':
			if !hasLiteral(data, i, "false") {
				return false
			}
			i += 5
		case 'n':
			if !hasLiteral(data, i, "null") {
				return false
			}
			i += 4
		default:
			var ok bool
			if i, ok = validNumber(data, i); !ok {
				return false
			}
		}
		// A value ended at i: close containers until another value is due.
		for {
			i = skipWS(data, i)
			if len(open) == 0 {
				return i == len(data)
			}
			if i >= len(data) {
				return false
			}
			top := open[len(open)-1]
			c := data[i]
			if c == ',' {
				i = skipWS(data, i+1)
				if top == '{' {
					var ok bool
					if i, ok = member(data, i); !ok {
						return false
					}
				}
				break
			}
			if c != top+2 { // not the closer of the innermost container
				return false
			}
			open = open[:len(open)-1]
			i++
		}
	}
}

// member reads `"key" :` at i and returns where the member's value starts.
func member(data []byte, i int) (int, bool) {
	if i >= len(data) || data[i] != '"' {
		return i, false
	}
	i, ok := validString(data, i)
	if !ok {
		return i, false
	}
	i = skipWS(data, i)
	if i >= len(data) || data[i] != ':' {
		return i, false
	}
	return skipWS(data, i+1), true
}

func hasLiteral(data []byte, i int, lit string) bool {
	return len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit
}

// validString checks the string whose opening quote is at i and returns the index after
// its closing quote.
func validString(data []byte, i int) (int, bool) {
	for i++; i < len(data); i++ {
		c := data[i]
		if plainInString[c] {
			continue
		}
		switch {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		case c == '\\':
			i++
			if i >= len(data) {
				return i, false
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(data)-i < 5 || !isHex(data[i+1]) || !isHex(data[i+2]) || !isHex(data[i+3]) || !isHex(data[i+4]) {
					return i, false
				}
				i += 4
			default:
				return i, false
			}
		}
	}
	return i, false
}

// plainInString marks the bytes a string may hold as they are: not a control character,
// a quote or a backslash.
var plainInString = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validNumber checks the number at i: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(data []byte, i int) (int, bool) {
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return i, false
	case data[i] == '0':
		i++
	case '1' <= data[i] && data[i] <= '9':
		i = digits(data, i)
	default:
		return i, false
	}
	if i < len(data) && data[i] == '.' {
		j := digits(data, i+1)
		if j == i+1 {
			return i, false
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := digits(data, i)
		if j == i {
			return i, false
		}
		i = j
	}
	return i, true
}

func digits(data []byte, i int) int {
	for i < len(data) && '0' <= data[i] && data[i] <= '9' {
		i++
	}
	return i
}
