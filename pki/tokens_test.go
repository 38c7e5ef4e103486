package pki

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodSecret = "s3cret-0123456789-abcdefgh"

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.yaml")
	content := `# comment
tokens:
  - name: ops
    role: operator
    secret: "` + goodSecret + `"
  - name: dnswatch
    role: detector
    secret: detector-secret-0123456789
  - {name: viewer, role: reader, secret: reader-secret-0123456789}
`
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	toks, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		secret string
		name   string
		role   Role
		ok     bool
	}{
		{goodSecret, "ops", RoleOperator, true},
		{"detector-secret-0123456789", "dnswatch", RoleDetector, true},
		{"reader-secret-0123456789", "viewer", RoleReader, true},
		{goodSecret + "x", "", "", false},
		{goodSecret[:len(goodSecret)-1], "", "", false},
		{"", "", "", false},
	}
	for _, c := range cases {
		name, role, ok := toks.Lookup(c.secret)
		if name != c.name || role != c.role || ok != c.ok {
			t.Errorf("Lookup(%q) = %q %q %v, want %q %q %v", c.secret, name, role, ok, c.name, c.role, c.ok)
		}
	}
	var nilTokens *Tokens
	if _, _, ok := nilTokens.Lookup(goodSecret); ok {
		t.Error("nil Tokens matched")
	}
}

func TestLoadTokensErrors(t *testing.T) {
	const s1, s2 = "first-secret-0123456789", "second-secret-0123456789"
	cases := []struct {
		name    string
		content string
		want    string // substring, after "FILE"
	}{
		{"empty file", "", ": no tokens defined"},
		{"no tokens", "tokens: []\n", ": no tokens defined"},
		{"unknown top-level key", "tokens: []\nextra: 1\n", `:2: unknown field "extra"`},
		{"unknown token field", "tokens:\n  - name: a\n    role: operator\n    secret: " + s1 + "\n    scope: all\n", `:5: unknown field "scope"`},
		{"bad role", "tokens:\n  - name: a\n    role: admin\n    secret: " + s1 + "\n", `:2: token "a": role "admin" must be operator, detector or reader`},
		{"node role", "tokens:\n  - name: a\n    role: node\n    secret: " + s1 + "\n", `:2: token "a": role "node" is reserved`},
		{"short secret", "tokens:\n  - name: a\n    role: reader\n    secret: short\n", ":2: token \"a\": secret must be at least 16"},
		{"missing secret", "tokens:\n  - name: a\n    role: reader\n", ":2: token \"a\": secret is required"},
		{"null secret", "tokens:\n  - name: a\n    role: reader\n    secret:\n", ":2: token \"a\": secret is required"},
		{"missing name", "tokens:\n  - role: reader\n    secret: " + s1 + "\n", ":2: name is required"},
		{"bad name", "tokens:\n  - name: 'a b'\n    role: reader\n    secret: " + s1 + "\n", ":2: name \"a b\""},
		{"duplicate name", "tokens:\n  - name: a\n    role: reader\n    secret: " + s1 + "\n  - name: a\n    role: reader\n    secret: " + s2 + "\n", `:5: duplicate token name "a" (first defined at line 2)`},
		{"duplicate secret", "tokens:\n  - name: a\n    role: reader\n    secret: " + s1 + "\n  - name: b\n    role: operator\n    secret: " + s1 + "\n", `:5: token "b" has the same secret as token "a"`},
		{"repeated key", "tokens:\n  - name: a\n    name: b\n    role: reader\n    secret: " + s1 + "\n", `:3: key "name" is repeated`},
		{"entry not a mapping", "tokens:\n  - just-a-string\n", ":2: a token must be a mapping"},
		{"secret is a list", "tokens:\n  - name: a\n    role: reader\n    secret: [x]\n", ":4: secret must be a string"},
		{"syntax error", "tokens:\n  - name: a\n   role: reader\n", ":1: did not find expected"},
		{"two documents", "tokens:\n  - {name: a, role: reader, secret: " + s1 + "}\n---\ntokens: []\n", ":3: only one YAML document"},
		{"secret with space", "tokens:\n  - name: a\n    role: reader\n    secret: 'abc def ghi jkl mno'\n", `:2: token "a": secret must be printable ASCII without spaces`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.yaml")
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadTokens(path)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), path) || !strings.Contains(err.Error(), path+c.want) {
				t.Fatalf("error %q, want %q", err, path+c.want)
			}
			for _, s := range []string{s1, s2, "abc def ghi jkl mno"} {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error leaks a secret: %q", err)
				}
			}
		})
	}
	if _, err := LoadTokens(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestNewTokens(t *testing.T) {
	if _, err := NewTokens(nil); err == nil {
		t.Error("empty token list accepted")
	}
	if _, err := NewTokens([]Token{{Name: "a", Role: RoleOperator, Secret: goodSecret}, {Name: "b", Role: RoleReader, Secret: goodSecret}}); err == nil {
		t.Error("duplicate secret accepted")
	}
	toks, err := NewTokens([]Token{{Name: "a", Role: RoleOperator, Secret: goodSecret}})
	if err != nil || toks.Len() != 1 {
		t.Fatalf("%v %v", toks, err)
	}
}

func BenchmarkLookup(b *testing.B) {
	var list []Token
	for i := range 32 {
		s, _ := NewTokenSecret()
		list = append(list, Token{Name: "t" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Role: RoleReader, Secret: s})
	}
	toks, err := NewTokens(list)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		toks.Lookup(list[31].Secret)
	}
}
