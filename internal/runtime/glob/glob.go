// Package glob matches tool names against the globs of the tool policy and the per-tool
// rate limits. The syntax is path.Match's — '*' any run of characters, '?' one character,
// '[...]' a class ('^' negates, 'a-z' ranges), '\' escapes — except that '/' is an
// ordinary character: tool names such as "github/delete_repo" are not paths, and a '*'
// that stopped at '/' would let a deny glob miss them.
package glob

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrBadPattern is wrapped by every error Validate returns.
var ErrBadPattern = errors.New("malformed glob")

type kind uint8

const (
	literal kind = iota
	anyRune
	anyRun
	class
)

type runeRange struct{ lo, hi rune }

type token struct {
	kind    kind
	r       rune        // literal
	ranges  []runeRange // class
	negated bool        // class
}

// Pattern is a compiled glob. The zero Pattern matches only the empty name.
type Pattern struct {
	src  string
	toks []token
}

// Compile parses pattern once, so that matching it costs no parsing or allocation.
func Compile(pattern string) (Pattern, error) {
	toks, err := parse(pattern)
	if err != nil {
		return Pattern{}, err
	}
	return Pattern{src: pattern, toks: toks}, nil
}

// String returns the glob as written.
func (p Pattern) String() string { return p.src }

// Validate reports whether pattern is a well-formed glob.
func Validate(pattern string) error {
	_, err := parse(pattern)
	return err
}

// Match reports whether name matches the whole of pattern. A malformed pattern matches
// nothing; callers validate patterns when the configuration is loaded, and compile the
// ones they match often.
func Match(pattern, name string) bool {
	p, err := Compile(pattern)
	return err == nil && p.Match(name)
}

// Match reports whether name matches the whole pattern.
func (p Pattern) Match(name string) bool {
	toks := p.toks
	// Greedy scan that, on a mismatch, lets the last '*' swallow one more rune. Every other
	// token matches exactly one rune, so retrying only the last '*' is enough: O(len*len).
	ti, ni := 0, 0
	starTi, starNi := -1, 0
	for ni < len(name) {
		r, w := utf8.DecodeRuneInString(name[ni:])
		switch {
		case ti < len(toks) && toks[ti].kind == anyRun:
			starTi, starNi = ti, ni
			ti++
		case ti < len(toks) && toks[ti].matches(r):
			ti++
			ni += w
		case starTi >= 0:
			_, sw := utf8.DecodeRuneInString(name[starNi:])
			starNi += sw
			ti, ni = starTi+1, starNi
		default:
			return false
		}
	}
	for ti < len(toks) && toks[ti].kind == anyRun {
		ti++
	}
	return ti == len(toks)
}

func (t token) matches(r rune) bool {
	switch t.kind {
	case literal:
		return r == t.r
	case anyRune:
		return true
	case class:
		in := false
		for _, rr := range t.ranges {
			if rr.lo <= r && r <= rr.hi {
				in = true
				break
			}
		}
		return in != t.negated
	}
	return false
}

func parse(pattern string) ([]token, error) {
	var toks []token
	for i := 0; i < len(pattern); {
		switch pattern[i] {
		case '*':
			if len(toks) == 0 || toks[len(toks)-1].kind != anyRun { // "**" is "*"
				toks = append(toks, token{kind: anyRun})
			}
			i++
		case '?':
			toks = append(toks, token{kind: anyRune})
			i++
		case '[':
			t, n, err := parseClass(pattern[i+1:])
			if err != nil {
				return nil, err
			}
			toks = append(toks, t)
			i += 1 + n
		default:
			r, n, err := classChar(pattern[i:], false)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: literal, r: r})
			i += n
		}
	}
	return toks, nil
}

// parseClass reads a class body up to and including its ']'; n is the bytes consumed.
func parseClass(s string) (t token, n int, err error) {
	t.kind = class
	if n < len(s) && s[n] == '^' {
		t.negated = true
		n++
	}
	for {
		if n >= len(s) {
			return token{}, 0, fmt.Errorf("%w: '[' has no closing ']'", ErrBadPattern)
		}
		if s[n] == ']' && len(t.ranges) > 0 {
			return t, n + 1, nil
		}
		lo, w, err := classChar(s[n:], true)
		if err != nil {
			return token{}, 0, err
		}
		n += w
		hi := lo
		if n < len(s) && s[n] == '-' {
			if hi, w, err = classChar(s[n+1:], true); err != nil {
				return token{}, 0, err
			}
			n += 1 + w
			if hi < lo {
				return token{}, 0, fmt.Errorf("%w: range %q-%q runs backwards", ErrBadPattern, lo, hi)
			}
		}
		t.ranges = append(t.ranges, runeRange{lo, hi})
	}
}

// classChar reads one possibly escaped character. Inside a class, as in path.Match,
// an unescaped '-' or ']' (including "[]") is malformed rather than guessed at.
func classChar(s string, inClass bool) (r rune, n int, err error) {
	if len(s) == 0 {
		return 0, 0, fmt.Errorf("%w: '[' has no closing ']'", ErrBadPattern)
	}
	if s[0] == '\\' {
		n = 1
		if len(s) == 1 {
			return 0, 0, fmt.Errorf("%w: trailing '\\' escapes nothing", ErrBadPattern)
		}
	} else if inClass && (s[0] == '-' || s[0] == ']') {
		return 0, 0, fmt.Errorf("%w: escape %q inside '[...]' as '\\%c'", ErrBadPattern, s[0], s[0])
	}
	r, w := utf8.DecodeRuneInString(s[n:])
	if r == utf8.RuneError && w == 1 {
		return 0, 0, fmt.Errorf("%w: not valid UTF-8", ErrBadPattern)
	}
	return r, n + w, nil
}
