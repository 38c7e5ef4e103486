package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Role is what an authenticated caller may do.
type Role string

const (
	// RoleOperator may call every public route (it includes RoleReader).
	RoleOperator Role = "operator"
	// RoleDetector may only call routes that list it (posting alerts).
	RoleDetector Role = "detector"
	// RoleReader may call read-only routes.
	RoleReader Role = "reader"
	// RoleNode is a controller node identified by its mTLS node certificate;
	// it may only call /v1/internal/* routes. It cannot be given to a token.
	RoleNode Role = "node"
)

// MinSecretLength is the shortest token secret LoadTokens accepts.
const MinSecretLength = 16

const maxSecretLength = 512

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Token is one API token definition.
type Token struct {
	Name   string `yaml:"name"`
	Role   Role   `yaml:"role"`
	Secret string `yaml:"secret"`
}

// Tokens is an immutable set of API tokens. Only SHA-256 digests of the
// secrets are kept in memory.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	name   string
	role   Role
	digest [sha256.Size]byte
}

// Len is the number of tokens.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// Lookup finds the token with the given secret. It compares the secret's
// SHA-256 digest with every token's digest in constant time and always
// visits all entries, so neither the position of a match nor a common
// prefix shows in the timing.
func (t *Tokens) Lookup(secret string) (name string, role Role, ok bool) {
	if t == nil || secret == "" {
		return "", "", false
	}
	d := sha256.Sum256([]byte(secret))
	idx := -1
	for i := range t.entries {
		eq := subtle.ConstantTimeCompare(d[:], t.entries[i].digest[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
	}
	if idx < 0 {
		return "", "", false
	}
	return t.entries[idx].name, t.entries[idx].role, true
}

// NewTokens validates a token list (names, roles, secret length, no
// duplicate names or secrets) and builds a Tokens set.
func NewTokens(list []Token) (*Tokens, error) {
	lines := make([]int, len(list))
	return buildTokens(list, lines, func(i int, msg string) error {
		return fmt.Errorf("tokens[%d]: %s", i, msg)
	})
}

func validRole(r Role) bool {
	return r == RoleOperator || r == RoleDetector || r == RoleReader
}

func buildTokens(list []Token, lines []int, errf func(i int, msg string) error) (*Tokens, error) {
	if len(list) == 0 {
		return nil, errf(-1, "no tokens defined")
	}
	t := &Tokens{}
	names := map[string]int{}
	digests := map[[sha256.Size]byte]string{}
	for i, tok := range list {
		switch {
		case tok.Name == "":
			return nil, errf(i, "name is required")
		case !tokenNameRE.MatchString(tok.Name):
			return nil, errf(i, fmt.Sprintf("name %q must match %s", tok.Name, tokenNameRE))
		case tok.Role == RoleNode:
			return nil, errf(i, fmt.Sprintf("token %q: role %q is reserved for node certificates", tok.Name, tok.Role))
		case !validRole(tok.Role):
			return nil, errf(i, fmt.Sprintf("token %q: role %q must be operator, detector or reader", tok.Name, tok.Role))
		case tok.Secret == "":
			return nil, errf(i, fmt.Sprintf("token %q: secret is required", tok.Name))
		case len(tok.Secret) < MinSecretLength:
			return nil, errf(i, fmt.Sprintf("token %q: secret must be at least %d characters (got %d)", tok.Name, MinSecretLength, len(tok.Secret)))
		case len(tok.Secret) > maxSecretLength:
			return nil, errf(i, fmt.Sprintf("token %q: secret must be at most %d characters", tok.Name, maxSecretLength))
		case strings.IndexFunc(tok.Secret, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0:
			return nil, errf(i, fmt.Sprintf("token %q: secret must be printable ASCII without spaces", tok.Name))
		}
		if prev, dup := names[tok.Name]; dup {
			where := fmt.Sprintf("tokens[%d]", prev)
			if lines[prev] > 0 {
				where = fmt.Sprintf("line %d", lines[prev])
			}
			return nil, errf(i, fmt.Sprintf("duplicate token name %q (first defined at %s)", tok.Name, where))
		}
		names[tok.Name] = i
		d := sha256.Sum256([]byte(tok.Secret))
		if other, dup := digests[d]; dup {
			return nil, errf(i, fmt.Sprintf("token %q has the same secret as token %q; secrets must be unique", tok.Name, other))
		}
		digests[d] = tok.Name
		t.entries = append(t.entries, tokenEntry{name: tok.Name, role: tok.Role, digest: d})
	}
	return t, nil
}

// yamlToken decodes one entry of the tokens list, rejecting unknown keys
// and remembering line numbers for error messages.
type yamlToken struct {
	Token
	line int
}

func (y *yamlToken) UnmarshalYAML(n *yaml.Node) error {
	y.line = n.Line
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a token must be a mapping with name, role and secret", n.Line)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			return fmt.Errorf("line %d: key %q is repeated", k.Line, k.Value)
		}
		seen[k.Value] = true
		var dst *string
		switch k.Value {
		case "name":
			dst = &y.Name
		case "role":
			dst = (*string)(&y.Role)
		case "secret":
			dst = &y.Secret
		default:
			return fmt.Errorf("line %d: unknown field %q (want name, role, secret)", k.Line, k.Value)
		}
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: %s must be a string", v.Line, k.Value)
		}
		if v.Tag != "!!null" {
			*dst = v.Value
		}
	}
	return nil
}

type tokensFile struct {
	Tokens []yamlToken `yaml:"tokens"`
}

var (
	yamlLineRE       = regexp.MustCompile(`(?:yaml: )?line (\d+): `)
	yamlUnknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)
)

// yamlError rewrites yaml's "line N: msg" into "FILE:N: msg".
func yamlError(path string, err error) error {
	var te *yaml.TypeError
	var msgs []string
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	for i, m := range msgs {
		m = yamlUnknownField.ReplaceAllString(m, `unknown field "$1"`)
		if loc := yamlLineRE.FindStringSubmatchIndex(m); loc != nil {
			msgs[i] = path + ":" + m[loc[2]:loc[3]] + ": " + m[loc[1]:]
		} else {
			msgs[i] = path + ": " + strings.TrimPrefix(m, "yaml: ")
		}
	}
	return errors.New(strings.Join(msgs, "; "))
}

// LoadTokens reads an API tokens file:
//
//	tokens:
//	  - name: ops
//	    role: operator    # operator | detector | reader
//	    secret: "…"       # at least 16 characters; unique
//
// Unknown keys, bad roles, short or duplicate secrets and duplicate names
// are rejected with "FILE:LINE: reason". Error messages never contain a
// secret.
func LoadTokens(path string) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f tokensFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: no tokens defined", path)
		}
		return nil, yamlError(path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s:%d: only one YAML document is allowed", path, extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(path, err)
	}
	list := make([]Token, len(f.Tokens))
	lines := make([]int, len(f.Tokens))
	for i, y := range f.Tokens {
		list[i], lines[i] = y.Token, y.line
	}
	return buildTokens(list, lines, func(i int, msg string) error {
		if i < 0 || lines[i] == 0 {
			return fmt.Errorf("%s: %s", path, msg)
		}
		return fmt.Errorf("%s:%d: %s", path, lines[i], msg)
	})
}
