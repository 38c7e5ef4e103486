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
	"github.com/ars-project/ars/transport"
)

// OperatorTokenFile is written by keygen next to tokens.yaml: the secret of
// the "operator" token, for ARS_HTTP_TOKEN_FILE.
const OperatorTokenFile = "operator.token"

func init() {
	app.Register(cli.Command{
		Name:    "keygen",
		Group:   groupOperations,
		Local:   true,
		Summary: "Generate the cluster CA, node and replica certificates, gossip key and API tokens",
		Help: `Writes into -dir: ca.pem ca-key.pem, NODE.pem NODE-key.pem per node,
replica-NAME.pem replica-NAME-key.pem per -replicas name, gossip.key,
tokens.yaml (operator, detector and reader tokens plus one operator token
per -operators name) and operator.token (the operator token's secret
alone, for ARS_HTTP_TOKEN_FILE). Secret files get mode 0600. Nothing is
overwritten: if any file exists, nothing is written.

-nodes takes NAME=ADDR entries separated by commas, and may be repeated;
ADDR is an IP address or a DNS name for the node's certificate. Give a name
several times to add several addresses:
  ars keygen -dir certs -nodes n1=127.0.0.1,n2=127.0.0.2,n3=127.0.0.3
  ars keygen -dir certs -nodes n1=10.0.0.1,n1=n1.lab.internal -nodes n2=10.0.0.2

-replicas takes entries of the same form for replica agents, one per DNS
replica, named as in the service spec; ADDR is where the leader reaches
the agent. A replica certificate serves the agent's listener and nothing
else: nodes, the API and Raft refuse it. Without -nodes, keygen issues
replica certificates only, with the CA already in -dir (ca.pem and
ca-key.pem):
  ars keygen -dir certs -nodes n1=10.0.0.1 -replicas win-bind=10.0.1.1
  ars keygen -dir certs -replicas lin-unbound=10.0.1.2,lin-unbound=unbound.lab.internal`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			dir := fs.String("dir", ".", "output `directory` (created if missing)")
			nodes := nameAddrList{kind: "node", valid: transport.ValidNodeName, rule: "[a-z0-9][a-z0-9-]{0,62}"}
			replicas := nameAddrList{kind: "replica", valid: transport.ValidReplicaName, rule: "[a-z0-9][a-z0-9._-]{0,62}"}
			fs.Var(&nodes, "nodes", "nodes as `NAME=ADDR,...` (repeatable)")
			fs.Var(&replicas, "replicas", "replica agents as `NAME=ADDR,...` (repeatable; without -nodes: with the CA in -dir)")
			operators := fs.String("operators", "", "extra operator token `names`, comma-separated")
			validity := fs.Duration("validity", pki.DefaultPKIValidity, "certificate `validity`")
			loopback := fs.Bool("loopback", false, "also put 127.0.0.1, ::1 and localhost in every node certificate")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				if len(nodes.entries) == 0 && len(replicas.entries) == 0 {
					return cli.UsageErrorf("-nodes is required, e.g. -nodes n1=127.0.0.1,n2=127.0.0.2,n3=127.0.0.3 (or -replicas alone, with the CA in -dir)")
				}
				if *validity <= 0 {
					return cli.UsageErrorf("-validity %s: must be > 0", *validity)
				}
				for _, r := range replicas.entries {
					if nodes.has(r.Name) {
						return cli.UsageErrorf("%q is given to a node and a replica; a replica needs a name of its own", r.Name)
					}
				}
				if len(nodes.entries) == 0 {
					if *operators != "" || *loopback {
						return cli.UsageErrorf("-operators and -loopback need -nodes: without it keygen issues replica certificates only")
					}
					return keygenReplicas(e, *dir, replicas.replicas(), *validity)
				}
				req := pki.PKIRequest{Dir: *dir, Nodes: nodes.nodes(), Replicas: replicas.replicas(), ValidFor: *validity, Loopback: *loopback}
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
				files = append(files, replicaFiles(req.Replicas)...)
				files = append(files, pki.GossipKeyFile, pki.TokensFile, OperatorTokenFile)
				return printKeygen(e, *dir, files, time.Now().Add(*validity))
			}
		},
	})
}

// keygenReplicas issues replica certificates with the CA in dir.
func keygenReplicas(e *cli.Env, dir string, replicas []pki.PKIReplica, validity time.Duration) error {
	for _, f := range []string{pki.CACertFile, pki.CAKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("-replicas without -nodes issues replica certificates with the CA in -dir, and %s has no %s (%v); give the -dir of the cluster's CA", dir, f, err)
		}
	}
	start := time.Now()
	if err := pki.IssueReplicaCerts(dir, replicas, validity); err != nil {
		return err
	}
	until := start.Add(validity)
	if ca, _, err := pki.LoadCA(dir); err == nil && ca.NotAfter.Before(until) {
		until = ca.NotAfter
	}
	return printKeygen(e, dir, replicaFiles(replicas), until)
}

func replicaFiles(replicas []pki.PKIReplica) []string {
	var files []string
	for _, r := range replicas {
		files = append(files, pki.ReplicaCertFile(r.Name), pki.ReplicaKeyFile(r.Name))
	}
	return files
}

// printKeygen lists the files written with their modes.
func printKeygen(e *cli.Env, dir string, files []string, validUntil time.Time) error {
	var out []keygenFile
	for _, f := range files {
		p := filepath.Join(dir, f)
		kf := keygenFile{File: p, Mode: "?"}
		if fi, err := os.Stat(p); err == nil {
			kf.Mode = fmt.Sprintf("%04o", fi.Mode().Perm())
		}
		kf.Secret = kf.Mode == "0600"
		out = append(out, kf)
	}
	return e.Print(map[string]any{"dir": dir, "files": out, "valid_until": validUntil.UTC().Format(time.RFC3339)}, func(w io.Writer) {
		fmt.Fprintln(w, "FILE\tMODE\tSECRET")
		for _, f := range out {
			fmt.Fprintf(w, "%s\t%s\t%s\n", f.File, f.Mode, cli.YesNo(f.Secret))
		}
	})
}

type keygenFile struct {
	File   string `json:"file"`
	Mode   string `json:"mode"`
	Secret bool   `json:"secret"`
}

// nameAddrList is the -nodes and -replicas flag: NAME=ADDR entries,
// merged by name in order; an ADDR that parses as an IP address is an IP
// SAN, anything else a DNS SAN. Names are checked as they are read.
type nameAddrList struct {
	kind    string            // "node" or "replica", for errors
	valid   func(string) bool // the name rule
	rule    string            // the rule, for errors
	entries []nameAddrs
}

// nameAddrs has the fields of pki.PKINode and pki.PKIReplica, so it
// converts to either.
type nameAddrs struct {
	Name string
	IPs  []string
	DNS  []string
}

func (l *nameAddrList) nodes() []pki.PKINode {
	var out []pki.PKINode
	for _, e := range l.entries {
		out = append(out, pki.PKINode(e))
	}
	return out
}

func (l *nameAddrList) replicas() []pki.PKIReplica {
	var out []pki.PKIReplica
	for _, e := range l.entries {
		out = append(out, pki.PKIReplica(e))
	}
	return out
}

func (l *nameAddrList) has(name string) bool {
	for _, e := range l.entries {
		if e.Name == name {
			return true
		}
	}
	return false
}

func (l *nameAddrList) String() string {
	var parts []string
	for _, n := range l.entries {
		for _, a := range append(append([]string{}, n.IPs...), n.DNS...) {
			parts = append(parts, n.Name+"="+a)
		}
	}
	return strings.Join(parts, ",")
}

func (l *nameAddrList) Set(v string) error {
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
		if l.valid != nil && !l.valid(name) {
			return fmt.Errorf("%q: %s name %q must match %s", entry, l.kind, name, l.rule)
		}
		i := -1
		for j := range l.entries {
			if l.entries[j].Name == name {
				i = j
			}
		}
		if i < 0 {
			l.entries = append(l.entries, nameAddrs{Name: name})
			i = len(l.entries) - 1
		}
		if ip, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil {
			l.entries[i].IPs = append(l.entries[i].IPs, ip.String())
		} else if strings.ContainsAny(addr, " /:[]") || strings.Trim(addr, "0123456789.") == "" {
			return fmt.Errorf("%q: %q is neither an IP address nor a DNS name", entry, addr)
		} else {
			l.entries[i].DNS = append(l.entries[i].DNS, addr)
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
