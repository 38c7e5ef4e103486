package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"

	"gopkg.in/yaml.v3"

	"github.com/ars-project/ars/cmd/internal/cli"
)

func init() {
	app.Register(cli.Command{
		Name:    "service apply",
		Group:   groupServices,
		Args:    "FILE",
		MinArgs: 1, MaxArgs: 1,
		Summary: "Create or update a service from a YAML or JSON spec (FILE '-' = stdin)",
		Help: `The spec has the fields of the API's ServiceSpec (snake_case keys):
name, address, replicas[] (name, impl, os, platform, vm, nic, snapshot,
host, image), probe and policy. See deploy/examples/service-dns.yaml.
YAML is converted to JSON locally; the node validates the spec strictly
and rejects unknown fields.`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			return func(ctx context.Context, e *cli.Env, args []string) error {
				name := args[0]
				data, err := readInput(e, name)
				if err != nil {
					return err
				}
				spec, err := specJSON(name, data)
				if err != nil {
					return err
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				res, err := c.ApplyService(ctx, spec)
				if err != nil {
					return err
				}
				if e.JSONOutput() {
					return e.JSON(res)
				}
				_, err = fmt.Fprintf(e.Stdout, "Service %s applied: generation %d (log index %d).\n", res.Service, res.Generation, res.Index)
				return err
			}
		},
	})
}

// maxSpecBytes matches the API's JSON body limit.
const maxSpecBytes = 1 << 20

// readInput reads a file argument; "-" is stdin.
func readInput(e *cli.Env, name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r, name = e.Stdin, "stdin"
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSpecBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(data) > maxSpecBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxSpecBytes)
	}
	return data, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:unmarshal errors:\s*)?line (\d+): `)

// specJSON returns the spec as JSON: JSON input unchanged, YAML converted.
func specJSON(name string, data []byte) ([]byte, error) {
	if name == "-" {
		name = "stdin"
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%s: empty spec", name)
	}
	if json.Valid(trimmed) {
		return trimmed, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, yamlErr(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s:%d: more than one YAML document; apply one service per file", name, extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlErr(name, err)
	}
	v, err := (&yamlConverter{}).convert(&doc, "", 0)
	if err != nil {
		return nil, fmt.Errorf("%s:%w", name, err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("%s:%d: the spec must be a mapping (name: …, replicas: …)", name, max(doc.Line, 1))
	}
	return json.Marshal(v)
}

func yamlErr(name string, err error) error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: invalid YAML: %s", name, m[1], msg[len(m[0]):])
	}
	return fmt.Errorf("%s: invalid YAML: %s", name, msg)
}

// convert converts a YAML node into a value encoding/json can
// marshal: mappings with string keys, sequences, and scalars resolved by
// their YAML tag. Errors read "LINE: path: reason".
type yamlConverter struct{ nodes int }

// maxYAMLNodes bounds alias expansion ("billion laughs").
const maxYAMLNodes = 100000

func (c *yamlConverter) convert(n *yaml.Node, path string, depth int) (any, error) {
	at := func(n *yaml.Node, format string, args ...any) error {
		p := path
		if p == "" {
			p = "spec"
		}
		return fmt.Errorf("%d: %s: %s", n.Line, p, fmt.Sprintf(format, args...))
	}
	if c.nodes++; depth > 64 || c.nodes > maxYAMLNodes {
		return nil, at(n, "nested too deeply or too large (recursive alias?)")
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return c.convert(n.Content[0], path, depth+1)
	case yaml.AliasNode:
		return c.convert(n.Alias, path, depth+1)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
				return nil, at(k, "only plain string keys are supported")
			}
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if _, dup := m[k.Value]; dup {
				return nil, at(k, "duplicate key %q", k.Value)
			}
			val, err := c.convert(v, p, depth+1)
			if err != nil {
				return nil, err
			}
			m[k.Value] = val
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			val, err := c.convert(item, fmt.Sprintf("%s[%d]", path, i), depth+1)
			if err != nil {
				return nil, err
			}
			s = append(s, val)
		}
		return s, nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, nil
		case "!!bool", "!!int", "!!float":
			var v any
			if err := n.Decode(&v); err != nil {
				return nil, at(n, "%v", err)
			}
			if f, ok := v.(float64); ok && (f != f || f > 1e308 || f < -1e308) {
				return nil, at(n, "%s is not a finite number", n.Value)
			}
			return v, nil
		default: // !!str, !!timestamp, !!binary: keep the text
			return n.Value, nil
		}
	}
	return nil, at(n, "unsupported YAML node")
}
