package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/pki"
)

// OperatorTokenFile is written by keygen next to tokens.yaml: the secret of
// the "operator" token, for ARS_HTTP_TOKEN_FILE.
const OperatorTokenFile = "operator.token"

func init() {
	app.Register(cli.Command{
		Name:    "keygen",
		Group:   groupOperations,
		Local:   true,
		Summary: "Generate the cluster CA, node certificates, gossip key and API tokens",
		Help: `Writes into -dir: ca.pem ca-key.pem, NODE.pem NODE-key.pem per node,
gossip.key, tokens.yaml (operator, detector and reader tokens plus one
operator token per -operators name) and operator.token (the operator
token's secret alone, for ARS_HTTP_TOKEN_FILE). Secret files get mode 0600.
Nothing is overwritten: if any file exists, nothing is written.

-nodes takes NAME=ADDR entries separated by commas, and may be repeated;
ADDR is an IP address or a DNS name for the node's certificate. Give a name
several times to add several addresses:
  ars keygen -dir certs -nodes n1=127.0.0.1,n2=127.0.0.2,n3=127.0.0.3
  ars keygen -dir certs -nodes n1=10.0.0.1,n1=n1.lab.internal -nodes n2=10.0.0.2`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			dir := fs.String("dir", ".", "output `directory` (created if missing)")
			var nodes nodeList
			fs.Var(&nodes, "nodes", "nodes as `NAME=ADDR,...` (repeatable)")
			operators := fs.String("operators", "", "extra operator token `names`, comma-separated")
			validity := fs.Duration("validity", pki.DefaultPKIValidity, "certificate `validity`")
			loopback := fs.Bool("loopback", false, "also put 127.0.0.1, ::1 and localhost in every node certificate")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				if len(nodes.nodes) == 0 {
					return cli.UsageErrorf("-nodes is required, e.g. -nodes n1=127.0.0.1,n2=127.0.0.2,n3=127.0.0.3")
				}
				if *validity <= 0 {
					return cli.UsageErrorf("-validity %s: must be > 0", *validity)
				}
				req := pki.PKIRequest{Dir: *dir, Nodes: nodes.nodes, ValidFor: *validity, Loopback: *loopback}
				for _, op := range strings.Split(*operators, ",") {
					if op = strings.TrimSpace(op); op != "" {
						req.Operators = append(req.Operators, op)
					}
				}
				if _, err := os.Lstat(filepath.Join(*dir, OperatorTokenFile)); err == nil {
					return fmt.Errorf("%s exists; keygen never overwrites (use another -dir)", filepath.Join(*dir, OperatorTokenFile))
				}
				if err := pki.GeneratePKI(req); err != nil {
					return err
				}
				if err := writeOperatorToken(*dir); err != nil {
					return err
				}
				files := []string{pki.CACertFile, pki.CAKeyFile}
				for _, n := range req.Nodes {
					files = append(files, pki.NodeCertFile(n.Name), pki.NodeKeyFile(n.Name))
				}
				files = append(files, pki.GossipKeyFile, pki.TokensFile, OperatorTokenFile)
				var out []keygenFile
				for _, f := range files {
					p := filepath.Join(*dir, f)
					kf := keygenFile{File: p, Mode: "?"}
					if fi, err := os.Stat(p); err == nil {
						kf.Mode = fmt.Sprintf("%04o", fi.Mode().Perm())
					}
					kf.Secret = kf.Mode == "0600"
					out = append(out, kf)
				}
				return e.Print(map[string]any{"dir": *dir, "files": out, "valid_until": time.Now().Add(*validity).UTC().Format(time.RFC3339)}, func(w io.Writer) {
					fmt.Fprintln(w, "FILE\tMODE\tSECRET")
					for _, f := range out {
						fmt.Fprintf(w, "%s\t%s\t%s\n", f.File, f.Mode, cli.YesNo(f.Secret))
					}
				})
			}
		},
	})
}

type keygenFile struct {
	File   string `json:"file"`
	Mode   string `json:"mode"`
	Secret bool   `json:"secret"`
}

// nodeList is the -nodes flag: NAME=ADDR entries, merged by name in order.
type nodeList struct{ nodes []pki.PKINode }

func (l *nodeList) String() string {
	var parts []string
	for _, n := range l.nodes {
		for _, a := range append(append([]string{}, n.IPs...), n.DNS...) {
			parts = append(parts, n.Name+"="+a)
		}
	}
	return strings.Join(parts, ",")
}

func (l *nodeList) Set(v string) error {
	for _, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, addr, ok := strings.Cut(entry, "=")
		name, addr = strings.TrimSpace(name), strings.TrimSpace(addr)
		if !ok || name == "" || addr == "" {
			return fmt.Errorf("%q: want NAME=ADDR", entry)
		}
		i := -1
		for j := range l.nodes {
			if l.nodes[j].Name == name {
				i = j
			}
		}
		if i < 0 {
			l.nodes = append(l.nodes, pki.PKINode{Name: name})
			i = len(l.nodes) - 1
		}
		if ip, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil {
			l.nodes[i].IPs = append(l.nodes[i].IPs, ip.String())
		} else {
			l.nodes[i].DNS = append(l.nodes[i].DNS, addr)
		}
	}
	return nil
}

// writeOperatorToken copies the "operator" token's secret from tokens.yaml
// into operator.token (0600, never overwriting).
func writeOperatorToken(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, pki.TokensFile))
	if err != nil {
		return err
	}
	var tf struct {
		Tokens []struct {
			Name   string `yaml:"name"`
			Secret string `yaml:"secret"`
		} `yaml:"tokens"`
	}
	if err := yaml.Unmarshal(data, &tf); err != nil {
		return fmt.Errorf("reading generated %s: %w", pki.TokensFile, err)
	}
	for _, t := range tf.Tokens {
		if t.Name != "operator" {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, OperatorTokenFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.WriteString(t.Secret + "\n"); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	return fmt.Errorf("generated %s has no operator token", pki.TokensFile)
}
