package glob

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "github/delete_repo", true}, // the review's repro: '*' must cross '/'
		{"*", "", true},
		{"*", "plain", true},
		{"admin_*", "admin_x/drop", true},
		{"admin_*", "admin_", true},
		{"admin_*", "xadmin_y", false},
		{"github/*", "github/delete_repo", true},
		{"github/*", "gitlab/delete_repo", false},
		{"*/delete_*", "github/org/delete_repo", true},
		{"*_repo", "github/delete_repo", true},
		{"*_repo", "github/delete_repos", false},
		{"a*b*c", "a/b/x/c", true},
		{"a*b*c", "a/b/x/cd", false},
		{"**", "a/b", true},
		{"", "", true},
		{"", "x", false},
		{"read_file", "read_file", true},
		{"read_file", "read_files", false},
		{"read_file", "Read_file", false},
		{"?", "/", true},
		{"?", "é", true}, // one character, two bytes
		{"?", "", false},
		{"?", "ab", false},
		{"gh?delete", "gh/delete", true},
		{"[a-c]x", "bx", true},
		{"[a-c]x", "dx", false},
		{"[^a-c]x", "/x", true},
		{"[^a-c]x", "ax", false},
		{"[\\]]", "]", true},
		{"\\*", "*", true},
		{"\\*", "x", false},
		{"[", "[", false}, // malformed: matches nothing
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		pattern string
		wantErr string // "" for a valid glob
	}{
		{"", ""},
		{"*", ""},
		{"github/*", ""},
		{"[a-z]?\\*", ""},
		{"[", "no closing ']'"},
		{"[a-", "no closing ']'"},
		{"[]", "escape ']'"},
		{"[a-]", "escape ']'"},
		{"[-a]", "escape '-'"},
		{"[z-a]", "runs backwards"},
		{"abc\\", "trailing '\\'"},
		{"a\xffb", "not valid UTF-8"},
	}
	for _, tt := range tests {
		err := Validate(tt.pattern)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("Validate(%q) = %v, want nil", tt.pattern, err)
		case tt.wantErr != "" && (!errors.Is(err, ErrBadPattern) || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("Validate(%q) = %v, want ErrBadPattern saying %q", tt.pattern, err, tt.wantErr)
		}
	}
}

// Apart from '/', the syntax is path.Match's: configurations that loaded before keep
// their meaning for names without '/'. (Validate also refuses backwards ranges such as
// "[z-a]", which path.Match accepts and never matches: a deny glob that silently matches
// nothing fails open.)
func TestAgreesWithPathMatchWithoutSlash(t *testing.T) {
	patterns := []string{"", "*", "a*", "*a", "a?c", "[abc]*", "[^abc]", "[a-c]?", "\\*x", "a**b", "[", "[]", "[-]", "x\\"}
	names := []string{"", "a", "abc", "ab", "xa", "d", "*x", "aXb", "ab_c"}
	for _, p := range patterns {
		_, pathErr := path.Match(p, "")
		if err := Validate(p); (err == nil) != (pathErr == nil) {
			t.Errorf("Validate(%q) = %v, path.Match says %v", p, err, pathErr)
		}
		for _, n := range names {
			want, _ := path.Match(p, n)
			if got := Match(p, n); got != want {
				t.Errorf("Match(%q, %q) = %v, path.Match says %v", p, n, got, want)
			}
		}
	}
}

// The tool policy and per-tool limits match every tools/call against their globs: a
// compiled Pattern should cost what path.Match (the '/'-unaware baseline) does, with no
// allocation.
func BenchmarkMatch(b *testing.B) {
	pat, err := Compile("admin_*")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Pattern.Match", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			pat.Match("test_simple_text")
		}
	})
	b.Run("path.Match baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = path.Match("admin_*", "test_simple_text")
		}
	})
}
