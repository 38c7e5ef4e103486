package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ars-project/ars/controller/vsphere"
)

// maxFileSize bounds what Load reads; an agent config is a few hundred bytes.
const maxFileSize = 1 << 20

// Load reads the YAML file at path, applies defaults, resolves relative file
// paths against the file's directory and validates the result. Every error
// wraps ErrInvalid (except a failure to read the file) and reads
// "FILE:LINE: reason".
func Load(path string) (*Agent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s:1: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s:1: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, &Error{File: path, Line: 1, Reason: fmt.Sprintf("file larger than %d bytes", maxFileSize)}
	}
	a, err := parse(path, data)
	if err != nil {
		return nil, err
	}
	a.resolvePaths(filepath.Dir(path))
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// parse decodes data (strictly) on top of Default() and records the line of
// every key. It does not validate values.
func parse(file string, data []byte) (a *Agent, err error) {
	// yaml.v3 is robust, but a panic on hostile input must not take the
	// agent (or the CLI) down with a stack trace: report it as a bad file.
	defer func() {
		if r := recover(); r != nil {
			a, err = nil, &Error{File: file, Line: 1, Reason: fmt.Sprintf("invalid YAML (parser failure: %v)", r)}
		}
	}()

	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(file, err, nil)
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		if n := doc.Content[0]; n.Kind != yaml.MappingNode && n.Tag != "!!null" {
			return nil, &Error{File: file, Line: max(n.Line, 1), Reason: "the top level must be a mapping of keys (node_name: …)"}
		}
	}
	idx := indexNode(&doc)

	a = Default()
	a.File = file
	a.lines = idx.lines

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	switch err := dec.Decode(a); {
	case errors.Is(err, io.EOF):
		return a, nil // empty file: defaults only; Validate reports what is missing
	case err != nil:
		return nil, yamlError(file, err, idx)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		line := extra.Line
		if line == 0 {
			line = 1
		}
		return nil, &Error{File: file, Line: line, Reason: "more than one YAML document; put the whole configuration in one"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(file, err, idx)
	}
	return a, nil
}

// resolvePaths makes relative file paths absolute against dir and defaults
// AdvertiseAddr to a specific BindAddr.
func (a *Agent) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p == "" || filepath.IsAbs(*p) {
			return
		}
		*p = filepath.Join(dir, *p)
		if ap, err := filepath.Abs(*p); err == nil {
			*p = ap
		}
	}
	abs(&a.DataDir)
	abs(&a.TLS.CAFile)
	abs(&a.TLS.CertFile)
	abs(&a.TLS.KeyFile)
	abs(&a.GossipKeyFile)
	abs(&a.TokensFile)
	vcenter := func(prefix string, vc *VCenter) {
		abs(&vc.PasswordFile)
		abs(&vc.CAFile)
		vc.setDefaults(prefix, func(f string) bool { _, ok := a.lines[f]; return ok })
		if tp, err := vsphere.ParseThumbprint(vc.Thumbprint); err == nil && vc.Thumbprint != "" {
			vc.Thumbprint = tp // canonical "AB:CD:…"; a bad one is left for Validate to report
		}
	}
	if a.VCenter != nil {
		vcenter("vcenter", a.VCenter)
	}
	for i := range a.VCenters {
		vcenter("vcenters["+strconv.Itoa(i)+"]", &a.VCenters[i])
	}
	for i := range a.Docker.Hosts {
		t := &a.Docker.Hosts[i].TLS
		abs(&t.CAFile)
		abs(&t.CertFile)
		abs(&t.KeyFile)
	}
	for i := range a.Notify {
		n := &a.Notify[i]
		if n.Exec != nil {
			abs(&n.Exec.Path)
		}
		if n.Webhook != nil {
			abs(&n.Webhook.SecretFile)
		}
		n.setDefaults("notify["+strconv.Itoa(i)+"]", func(f string) bool { _, ok := a.lines[f]; return ok })
	}
	if bind, err := netip.ParseAddr(a.BindAddr); err == nil && !bind.IsUnspecified() && a.AdvertiseAddr == "" {
		a.AdvertiseAddr = a.BindAddr
	}
}

// nodeIndex records where each key and value of the document is.
type nodeIndex struct {
	lines map[string]int // path -> line of the key (or of the sequence item)
	spots []spot         // every key and scalar, in document order
}

type spot struct {
	line  int
	path  string
	key   string // the mapping key, "" for sequence items
	value string // scalar value, "" otherwise
}

func indexNode(doc *yaml.Node) *nodeIndex {
	idx := &nodeIndex{lines: map[string]int{}}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		idx.walk(doc.Content[0], "", 0)
	}
	return idx
}

func (idx *nodeIndex) walk(n *yaml.Node, path string, depth int) {
	if depth > 64 || n == nil {
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if _, dup := idx.lines[p]; !dup {
				idx.lines[p] = k.Line
			}
			s := spot{line: k.Line, path: p, key: k.Value}
			if v.Kind == yaml.ScalarNode && v.Line == k.Line {
				s.value = v.Value
			}
			idx.spots = append(idx.spots, s)
			if v.Kind == yaml.ScalarNode && v.Line != k.Line {
				idx.spots = append(idx.spots, spot{line: v.Line, path: p, value: v.Value})
			}
			idx.walk(v, p, depth+1)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			idx.lines[p] = item.Line
			s := spot{line: item.Line, path: p}
			if item.Kind == yaml.ScalarNode {
				s.value = item.Value
			}
			idx.spots = append(idx.spots, s)
			idx.walk(item, p, depth+1)
		}
	case yaml.AliasNode:
		// Aliases are resolved by the decoder; their lines point at the alias.
	}
}

// at finds the field path at line whose key or value matches want (a value
// as quoted by yaml.v3, possibly truncated to "abcdefg...").
func (idx *nodeIndex) at(line int, key, value string) string {
	if idx == nil {
		return ""
	}
	prefix, truncated := strings.CutSuffix(value, "...")
	var onLine []spot
	for _, s := range idx.spots {
		if s.line != line {
			continue
		}
		onLine = append(onLine, s)
		if key != "" && s.key == key {
			return s.path
		}
		if value != "" && (s.value == value || truncated && strings.HasPrefix(s.value, prefix)) {
			return s.path
		}
	}
	if key == "" && value == "" {
		// A non-scalar value of the wrong kind: the key that holds it.
		for _, s := range onLine {
			if s.key != "" {
				return s.path
			}
		}
	}
	return ""
}

var (
	reSyntax   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	reTypeLine = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)
	// (?s): a key may hold a line break (a flow scalar folds one in).
	reUnknown = regexp.MustCompile(`(?s)^field (.+) not found in type \S+$`)
	reDup     = regexp.MustCompile(`(?s)^mapping key "(.*)" already defined at line (\d+)$`)
	reCannot  = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
)

// parserProblems are the messages of yaml.v3's parser (parserc.go), as
// opposed to its scanner.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// yamlError converts a yaml.v3 error into *Error values ("FILE:LINE: reason").
func yamlError(file string, err error, idx *nodeIndex) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var errs []*Error
		for _, msg := range te.Errors {
			m := reTypeLine.FindStringSubmatch(msg)
			if m == nil {
				errs = append(errs, &Error{File: file, Line: 1, Reason: oneLine(msg)})
				continue
			}
			line, _ := strconv.Atoi(m[1])
			errs = append(errs, typeError(file, line, m[2], idx))
		}
		return joinErrors(errs)
	}
	msg := err.Error()
	if m := reSyntax.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if parserProblems[m[2]] {
			// yaml.v3 reports parser (not scanner) errors with a 0-based line
			// (the start of the enclosing construct); make it 1-based.
			line++
		}
		return &Error{File: file, Line: max(line, 1), Reason: "invalid YAML: " + oneLine(m[2])}
	}
	return &Error{File: file, Line: 1, Reason: "invalid YAML: " + oneLine(strings.TrimPrefix(msg, "yaml: "))}
}

// oneLine escapes the line breaks of s.
func oneLine(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}

func typeError(file string, line int, msg string, idx *nodeIndex) *Error {
	// Every error is one "FILE:LINE: reason" line: a line break the YAML
	// carried into the message (a key or value folded across lines) is
	// shown escaped.
	e := &Error{File: file, Line: max(line, 1), Reason: oneLine(msg)}
	if m := reUnknown.FindStringSubmatch(msg); m != nil {
		e.Field = idx.at(line, m[1], "")
		e.Reason = "unknown key"
		if e.Field == "" {
			e.Reason = fmt.Sprintf("unknown key %q", m[1])
		}
		return e
	}
	if m := reDup.FindStringSubmatch(msg); m != nil {
		e.Field = idx.at(line, m[1], "")
		e.Reason = fmt.Sprintf("duplicate key (first defined at line %s)", m[2])
		if e.Field == "" {
			e.Reason = fmt.Sprintf("duplicate key %q (first defined at line %s)", m[1], m[2])
		}
		return e
	}
	if m := reCannot.FindStringSubmatch(msg); m != nil {
		tag, value, target := m[1], m[2], m[3]
		e.Field = idx.at(line, "", value)
		got := tag
		if value != "" {
			got = strconv.Quote(value)
		} else {
			got = kindName(tag)
		}
		e.Reason = fmt.Sprintf("must be %s, got %s", describe(target), got)
		if _, err := strconv.Atoi(value); err == nil && target == "time.Duration" {
			e.Reason += " (a unit is required, e.g. " + value + "ms)"
		}
	}
	return e
}

func kindName(tag string) string {
	switch tag {
	case "!!map":
		return "a mapping"
	case "!!seq":
		return "a list"
	case "!!null":
		return "null"
	}
	return tag
}

// describe names a Go target type for people.
func describe(target string) string {
	switch {
	case target == "time.Duration":
		return "a duration such as 500ms, 2s or 1m"
	case target == "int" || target == "int64":
		return "an integer"
	case target == "uint64" || target == "uint":
		return "a non-negative integer"
	case target == "string":
		return "a string"
	case target == "bool":
		return "true or false"
	case strings.HasPrefix(target, "[]"):
		return "a list"
	case strings.HasPrefix(target, "config.") || strings.HasPrefix(target, "*config."):
		return "a mapping"
	}
	return target
}

// joinErrors sorts by line and joins; nil for none, the *Error itself for one.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	if len(errs) == 1 {
		return errs[0]
	}
	es := make([]error, len(errs))
	for i, e := range errs {
		es[i] = e
	}
	return errors.Join(es...)
}
