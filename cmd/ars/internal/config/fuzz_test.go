package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load through a file. Load must never
// panic (the recover in parse would report "parser failure", which counts as
// a failure here too), and every error must wrap ErrInvalid and read
// "FILE:LINE: reason", one per line.
func FuzzLoad(f *testing.F) {
	ents, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() { // testdata/fuzz: the fuzzer's own corpus
			continue
		}
		data, err := os.ReadFile(filepath.Join("testdata", e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "~", "---\n---\n", "[", "{", "node_name: &a [*a]", "a: &x {b: *x}",
		"node_name: !!binary aGVsbG8=", "ports: {api: 0x1F}", "raft: {heartbeat_timeout: 1e9}",
		"join: [\"[::1]:7502\", \"[::1\"]", "\xff\xfe", "node_name: \"\\u0000\"",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	writeFixtures(f, dir)
	f.Fuzz(func(t *testing.T, data []byte) {
		tmp, err := os.CreateTemp(dir, "in-*.yaml")
		if err != nil {
			t.Fatal(err)
		}
		path := tmp.Name()
		defer os.Remove(path)
		if _, err := tmp.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := tmp.Close(); err != nil {
			t.Fatal(err)
		}
		a, err := Load(path)
		if err == nil {
			if a == nil {
				t.Fatal("Load returned nil, nil")
			}
			if verr := a.Validate(); verr != nil {
				t.Fatalf("Load accepted a config that Validate rejects: %v", verr)
			}
			return
		}
		if a != nil {
			t.Fatalf("Load returned a config and an error: %v", err)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error does not wrap ErrInvalid: %v", err)
		}
		if strings.Contains(err.Error(), "parser failure") {
			t.Fatalf("parser panicked: %v", err)
		}
		lineRE := regexp.MustCompile(`^` + regexp.QuoteMeta(path) + `:[1-9][0-9]*: \S`)
		for _, l := range strings.Split(err.Error(), "\n") {
			if !lineRE.MatchString(l) {
				t.Fatalf("error line %q is not %q", l, path+":LINE: reason")
			}
		}
	})
}
