package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSpecJSON(t *testing.T) {
	tests := []struct {
		name, in, want, err string
	}{
		{"json passes unchanged", `{"name":"dns","x":[1,2]}`, `{"name":"dns","x":[1,2]}`, ""},
		{"yaml scalars", "name: dns\nn: 3\nf: 1.5\nb: true\nnull_: ~\nd: 100ms\nts: 2001-12-14\nq: \"007\"\n",
			`{"b":true,"d":"100ms","f":1.5,"n":3,"name":"dns","null_":null,"q":"007","ts":"2001-12-14"}`, ""},
		{"nested and anchors", "base: &b {os: linux}\nreplicas:\n  - *b\n  - {os: windows}\n",
			`{"base":{"os":"linux"},"replicas":[{"os":"linux"},{"os":"windows"}]}`, ""},
		{"empty", " \n", "", "f: empty spec"},
		{"syntax", "a: [1\n", "", "f:1: invalid YAML"},
		{"non-string key", "name: x\n? [a]\n: 1\n", "", "f:2: spec: only plain string keys"},
		{"duplicate key", "a: 1\na: 2\n", "", `f:2: spec: duplicate key "a"`},
		{"recursive alias", "a: &x [*x]\n", "", "f:"},
		{"nan", "x: .nan\n", "", "f:1: x: .nan is not a finite number"},
		{"scalar document", "just text\n", "", "must be a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := specJSON("f", []byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("specJSON = %s, %v; want error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("specJSON = %s, want %s", got, tt.want)
			}
		})
	}
}

// FuzzSpecJSON: arbitrary input never panics, and success means valid JSON.
func FuzzSpecJSON(f *testing.F) {
	for _, s := range []string{"name: dns\n", "{}", "a: &x [*x]", "a: &a [*a, *a]\nb: &b [*a, *a]\nc: [*b, *b]", "- 1", "? [a]\n: 1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := specJSON("f", data)
		if err == nil && !json.Valid(out) {
			t.Fatalf("specJSON(%q) = %q: not JSON", data, out)
		}
	})
}
