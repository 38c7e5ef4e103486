package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ars-project/ars/transport"
)

// DefaultPKIValidity is the validity of the CA and of node and replica
// certificates when none is given.
const DefaultPKIValidity = 10 * 365 * 24 * time.Hour

// File names written by GeneratePKI.
const (
	CACertFile    = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	GossipKeyFile = "gossip.key"
	TokensFile    = "tokens.yaml"
)

// NodeCertFile and NodeKeyFile are a node's certificate and key file names.
func NodeCertFile(node string) string { return node + ".pem" }
func NodeKeyFile(node string) string  { return node + "-key.pem" }

// PKINode is one controller node to issue a certificate for.
type PKINode struct {
	Name string   // node name: [a-z0-9][a-z0-9-]{0,62}; also a DNS SAN
	IPs  []string // IP SANs (the node's advertise addresses)
	DNS  []string // extra DNS SANs
}

// PKIReplica is one DNS replica to issue a replica certificate for: the
// server certificate of the replica agent on that replica's machine.
type PKIReplica struct {
	Name string   // replica name as in the service spec: [a-z0-9][a-z0-9._-]{0,62}
	IPs  []string // IP SANs (addresses the leader dials the agent at)
	DNS  []string // DNS SANs
}

// ReplicaCertFile and ReplicaKeyFile are a replica's certificate and key
// file names.
func ReplicaCertFile(name string) string { return "replica-" + name + ".pem" }
func ReplicaKeyFile(name string) string  { return "replica-" + name + "-key.pem" }

// PKIRequest describes the material `ars keygen` writes.
type PKIRequest struct {
	Dir       string
	Nodes     []PKINode
	Replicas  []PKIReplica  // replica certificates to issue as well
	Operators []string      // extra operator token names (beside "operator")
	ValidFor  time.Duration // CA, node and replica certificates; default DefaultPKIValidity
	// Loopback adds 127.0.0.1, ::1 and "localhost" to every node
	// certificate (single-machine labs and tests).
	Loopback bool
}

// GeneratePKI writes a fresh cluster CA (ca.pem, ca-key.pem), a certificate
// and key per node (<node>.pem, <node>-key.pem), a gossip encryption key
// (gossip.key, base64 of 32 random bytes) and an API tokens file
// (tokens.yaml: "operator", "detector" and "reader" tokens plus one
// operator token per extra name), and a certificate and key per replica
// (see IssueReplicaCert). Keys are ECDSA P-256. Node certificates are
// valid for server and client authentication and carry the node marker
// (URI SAN ars://node/<name> and OU "ars-node"). Secret files are written
// with mode 0600. Nothing is written if any target file exists.
func GeneratePKI(req PKIRequest) error {
	if req.Dir == "" {
		return errors.New("pki: an output directory is required")
	}
	if len(req.Nodes) == 0 {
		return errors.New("pki: at least one node is required")
	}
	validFor := req.ValidFor
	if validFor == 0 {
		validFor = DefaultPKIValidity
	}
	if validFor < 0 {
		return fmt.Errorf("pki: validity %s is negative", validFor)
	}
	seen := map[string]bool{}
	for i, n := range req.Nodes {
		if !transport.ValidNodeName(n.Name) {
			return fmt.Errorf("pki: nodes[%d]: name %q must match [a-z0-9][a-z0-9-]{0,62}", i, n.Name)
		}
		if seen[n.Name] {
			return fmt.Errorf("pki: nodes[%d]: duplicate node name %q", i, n.Name)
		}
		seen[n.Name] = true
		if _, _, err := nodeSANs(n, false); err != nil {
			return fmt.Errorf("pki: node %s: %w", n.Name, err)
		}
	}
	if err := checkReplicas(req.Replicas, seen); err != nil {
		return err
	}
	tokenNames := []string{"operator", "detector", "reader"}
	tokenRoles := []Role{RoleOperator, RoleDetector, RoleReader}
	for _, op := range req.Operators {
		if op == "operator" {
			continue
		}
		if !tokenNameRE.MatchString(op) {
			return fmt.Errorf("pki: operator token name %q must match %s", op, tokenNameRE)
		}
		if slices.Contains(tokenNames, op) {
			return fmt.Errorf("pki: duplicate token name %q", op)
		}
		tokenNames = append(tokenNames, op)
		tokenRoles = append(tokenRoles, RoleOperator)
	}

	files := []string{CACertFile, CAKeyFile, GossipKeyFile, TokensFile}
	for _, n := range req.Nodes {
		files = append(files, NodeCertFile(n.Name), NodeKeyFile(n.Name))
	}
	for _, r := range req.Replicas {
		files = append(files, ReplicaCertFile(r.Name), ReplicaKeyFile(r.Name))
	}
	if err := distinctFiles(files); err != nil {
		return err
	}
	if err := os.MkdirAll(req.Dir, 0o700); err != nil {
		return fmt.Errorf("pki: creating %s: %w", req.Dir, err)
	}
	if err := refuseExisting(req.Dir, files); err != nil {
		return err
	}

	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: generating CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          mustSerial(),
		Subject:               pkix.Name{CommonName: "ars cluster CA", Organization: []string{"ars"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validFor),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("pki: creating CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("pki: parsing CA certificate: %w", err)
	}
	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return err
	}
	out := []pkiFile{
		{CACertFile, pemBlock("CERTIFICATE", caDER), 0o644},
		{CAKeyFile, caKeyPEM, 0o600},
	}
	for _, n := range req.Nodes {
		certPEM, kPEM, err := issueNodeCert(caCert, caKey, n, req.Loopback, now, caCert.NotAfter)
		if err != nil {
			return err
		}
		out = append(out, pkiFile{NodeCertFile(n.Name), certPEM, 0o644}, pkiFile{NodeKeyFile(n.Name), kPEM, 0o600})
	}
	for _, r := range req.Replicas {
		certPEM, kPEM, err := issueReplicaCert(caCert, caKey, r, now, caCert.NotAfter)
		if err != nil {
			return err
		}
		out = append(out, pkiFile{ReplicaCertFile(r.Name), certPEM, 0o644}, pkiFile{ReplicaKeyFile(r.Name), kPEM, 0o600})
	}
	gossip, err := randomBytes(32)
	if err != nil {
		return err
	}
	out = append(out, pkiFile{GossipKeyFile, []byte(base64.StdEncoding.EncodeToString(gossip) + "\n"), 0o600})

	var tok bytes.Buffer
	tok.WriteString("# ars API tokens, generated by `ars keygen`. Keep this file secret (mode 0600).\n")
	tok.WriteString("# Roles: operator (everything), reader (read-only), detector (post alerts only).\n")
	tok.WriteString("tokens:\n")
	for i, name := range tokenNames {
		secret, err := NewTokenSecret()
		if err != nil {
			return err
		}
		fmt.Fprintf(&tok, "  - name: %s\n    role: %s\n    secret: %q\n", name, tokenRoles[i], secret)
	}
	out = append(out, pkiFile{TokensFile, tok.Bytes(), 0o600})

	return writeFilesExclusive(req.Dir, out)
}

// IssueNodeCert issues a certificate for one more node with the CA in dir
// (ca.pem, ca-key.pem), writing <node>.pem and <node>-key.pem there. It
// refuses to overwrite existing files. The certificate expires with the CA
// at the latest.
func IssueNodeCert(dir string, node PKINode, validFor time.Duration, loopback bool) error {
	if !transport.ValidNodeName(node.Name) {
		return fmt.Errorf("pki: node name %q must match [a-z0-9][a-z0-9-]{0,62}", node.Name)
	}
	return issueWithCA(dir, validFor, []string{NodeCertFile(node.Name), NodeKeyFile(node.Name)},
		func(ca *x509.Certificate, caKey *ecdsa.PrivateKey, now, notAfter time.Time) ([]pkiFile, error) {
			certPEM, kPEM, err := issueNodeCert(ca, caKey, node, loopback, now, notAfter)
			if err != nil {
				return nil, err
			}
			return []pkiFile{{NodeCertFile(node.Name), certPEM, 0o644}, {NodeKeyFile(node.Name), kPEM, 0o600}}, nil
		})
}

// IssueReplicaCert issues a replica certificate with the CA in dir (ca.pem,
// ca-key.pem), writing replica-<name>.pem (0644) and replica-<name>-key.pem
// (0600) there; it refuses to overwrite existing files. The certificate is
// for server authentication only (the replica agent's listener), carries
// the replica marker (URI SAN ars://replica/<name> and OU "ars-replica",
// the name as CN) and r's addresses as SANs; at least one address is
// required. It is valid for validFor (DefaultPKIValidity if not positive)
// and expires with the CA at the latest.
func IssueReplicaCert(dir string, r PKIReplica, validFor time.Duration) error {
	return IssueReplicaCerts(dir, []PKIReplica{r}, validFor)
}

// IssueReplicaCerts is IssueReplicaCert for several replicas at once: if
// any name or address is bad or any target file exists, nothing is
// written.
func IssueReplicaCerts(dir string, rs []PKIReplica, validFor time.Duration) error {
	if len(rs) == 0 {
		return errors.New("pki: no replica to issue a certificate for")
	}
	if err := checkReplicas(rs, nil); err != nil {
		return err
	}
	var files []string
	for _, r := range rs {
		files = append(files, ReplicaCertFile(r.Name), ReplicaKeyFile(r.Name))
	}
	if err := distinctFiles(files); err != nil {
		return err
	}
	return issueWithCA(dir, validFor, files,
		func(ca *x509.Certificate, caKey *ecdsa.PrivateKey, now, notAfter time.Time) ([]pkiFile, error) {
			var out []pkiFile
			for _, r := range rs {
				certPEM, kPEM, err := issueReplicaCert(ca, caKey, r, now, notAfter)
				if err != nil {
					return nil, err
				}
				out = append(out, pkiFile{ReplicaCertFile(r.Name), certPEM, 0o644}, pkiFile{ReplicaKeyFile(r.Name), kPEM, 0o600})
			}
			return out, nil
		})
}

// checkReplicas validates replica names and addresses; nodes holds the
// node names a replica may not share (nil for none).
func checkReplicas(rs []PKIReplica, nodes map[string]bool) error {
	seen := map[string]bool{}
	for i, r := range rs {
		if !transport.ValidReplicaName(r.Name) {
			return fmt.Errorf("pki: replicas[%d]: name %q must match [a-z0-9][a-z0-9._-]{0,62}", i, r.Name)
		}
		if seen[r.Name] {
			return fmt.Errorf("pki: replicas[%d]: duplicate replica name %q", i, r.Name)
		}
		if nodes[r.Name] {
			return fmt.Errorf("pki: replicas[%d]: %q is also a node name; give replicas names of their own", i, r.Name)
		}
		seen[r.Name] = true
		if _, _, err := replicaSANs(r); err != nil {
			return fmt.Errorf("pki: replica %s: %w", r.Name, err)
		}
	}
	return nil
}

// distinctFiles refuses a set of files in which two certificates or keys
// would share a name (node "a" and node "a-key", node "ca", a node and a
// replica "replica-x" and "x").
func distinctFiles(files []string) error {
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f] {
			return fmt.Errorf("pki: two of the files to write would be named %s; rename a node or replica", f)
		}
		seen[f] = true
	}
	return nil
}

// issueWithCA loads the CA in dir and writes the files issue returns,
// after refusing any of names that exists. The certificates are valid from
// now until now+validFor (DefaultPKIValidity if not positive), and the CA's
// expiry at the latest.
func issueWithCA(dir string, validFor time.Duration, names []string,
	issue func(ca *x509.Certificate, caKey *ecdsa.PrivateKey, now, notAfter time.Time) ([]pkiFile, error)) error {
	if validFor <= 0 {
		validFor = DefaultPKIValidity
	}
	if err := refuseExisting(dir, names); err != nil {
		return err
	}
	caCert, caKey, err := LoadCA(dir)
	if err != nil {
		return err
	}
	now := time.Now()
	notAfter := now.Add(validFor)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	out, err := issue(caCert, caKey, now, notAfter)
	if err != nil {
		return err
	}
	return writeFilesExclusive(dir, out)
}

// ReadCert reads the first certificate of the PEM file at path.
func ReadCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading certificate: %w", err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

// LoadCA reads the cluster CA certificate and key that GeneratePKI wrote to dir.
func LoadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	cert, err := ReadCert(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: the CA certificate: %w", err)
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: reading CA key: %w", err)
	}
	kblk, _ := pem.Decode(kb)
	if kblk == nil {
		return nil, nil, fmt.Errorf("pki: %s: no PEM key", keyPath)
	}
	var key any
	switch kblk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(kblk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kblk.Bytes)
	default:
		err = fmt.Errorf("unsupported PEM block %q", kblk.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %s: %w", keyPath, err)
	}
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("pki: %s: not an ECDSA key", keyPath)
	}
	if !ek.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("pki: %s does not belong to %s", keyPath, certPath)
	}
	return cert, ek, nil
}

// nodeSANs are a node certificate's SANs: its IPs, its name and DNS names.
func nodeSANs(n PKINode, loopback bool) ([]net.IP, []string, error) {
	return leafSANs(n.IPs, append([]string{n.Name}, n.DNS...), loopback)
}

// replicaSANs are a replica certificate's SANs: its IPs and DNS names, at
// least one of them.
func replicaSANs(r PKIReplica) ([]net.IP, []string, error) {
	ips, dns, err := leafSANs(r.IPs, r.DNS, false)
	if err == nil && len(ips) == 0 && len(dns) == 0 {
		err = errors.New("no address: give the IP address or DNS name the leader dials the replica agent at")
	}
	return ips, dns, err
}

// leafSANs parses IP and DNS SANs, dropping duplicates; loopback adds
// 127.0.0.1, ::1 and localhost.
func leafSANs(ipList, dnsList []string, loopback bool) ([]net.IP, []string, error) {
	var ips []net.IP
	for _, s := range ipList {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			return nil, nil, fmt.Errorf("invalid IP address %q", s)
		}
		ips = append(ips, ip)
	}
	var dns []string
	for _, d := range dnsList {
		d = strings.TrimSpace(d)
		if d == "" || strings.ContainsAny(d, " /:") {
			return nil, nil, fmt.Errorf("invalid DNS name %q", d)
		}
		dns = append(dns, d)
	}
	if loopback {
		ips = append(ips, net.IPv4(127, 0, 0, 1), net.IPv6loopback)
		dns = append(dns, "localhost")
	}
	var uniq []net.IP
	for _, ip := range ips {
		if !slices.ContainsFunc(uniq, ip.Equal) {
			uniq = append(uniq, ip)
		}
	}
	slices.Sort(dns)
	return uniq, slices.Compact(dns), nil
}

func issueNodeCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, n PKINode, loopback bool, now, notAfter time.Time) (certPEM, kPEM []byte, err error) {
	ips, dns, err := nodeSANs(n, loopback)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: node %s: %w", n.Name, err)
	}
	return issueLeaf(ca, caKey, leafSpec{
		what: "node " + n.Name, name: n.Name, ou: transport.NodeOU, uri: transport.NodeURI(n.Name),
		ips: ips, dns: dns,
		usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, now, notAfter)
}

// issueReplicaCert issues a replica certificate: server authentication
// only, since the replica agent never acts as a client.
func issueReplicaCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, r PKIReplica, now, notAfter time.Time) (certPEM, kPEM []byte, err error) {
	ips, dns, err := replicaSANs(r)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: replica %s: %w", r.Name, err)
	}
	return issueLeaf(ca, caKey, leafSpec{
		what: "replica " + r.Name, name: r.Name, ou: transport.ReplicaOU, uri: transport.ReplicaURI(r.Name),
		ips: ips, dns: dns,
		usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, now, notAfter)
}

// leafSpec is what distinguishes one kind of leaf certificate from
// another: the marker (OU and URI SAN), the SANs and the key usages.
type leafSpec struct {
	what     string // for errors: "node n1", "replica r1"
	name, ou string // Subject CN and OU
	uri      *url.URL
	ips      []net.IP
	dns      []string
	usage    []x509.ExtKeyUsage
}

// issueLeaf issues a leaf certificate with a fresh P-256 key, signed by ca.
func issueLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, spec leafSpec, now, notAfter time.Time) (certPEM, kPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generating key for %s: %w", spec.what, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: mustSerial(),
		Subject: pkix.Name{
			CommonName:         spec.name,
			Organization:       []string{"ars"},
			OrganizationalUnit: []string{spec.ou},
		},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           spec.usage,
		BasicConstraintsValid: true,
		IPAddresses:           spec.ips,
		DNSNames:              spec.dns,
		URIs:                  []*url.URL{spec.uri},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: creating certificate for %s: %w", spec.what, err)
	}
	kPEM, err = keyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), kPEM, nil
}

type pkiFile struct {
	name string
	data []byte
	mode os.FileMode
}

func refuseExisting(dir string, names []string) error {
	for _, name := range names {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("pki: refusing to overwrite existing file %s", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("pki: checking %s: %w", p, err)
		}
	}
	return nil
}

// writeFilesExclusive creates every file with O_EXCL; if one fails, the
// files created so far are removed again so no half-written set remains.
func writeFilesExclusive(dir string, files []pkiFile) (err error) {
	var created []string
	defer func() {
		if err != nil {
			for _, p := range created {
				_ = os.Remove(p)
			}
		}
	}()
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("pki: refusing to overwrite existing file %s", p)
			}
			return fmt.Errorf("pki: creating %s: %w", p, err)
		}
		created = append(created, p)
		if _, err := fh.Write(f.data); err != nil {
			_ = fh.Close()
			return fmt.Errorf("pki: writing %s: %w", p, err)
		}
		if err := fh.Sync(); err != nil {
			_ = fh.Close()
			return fmt.Errorf("pki: writing %s: %w", p, err)
		}
		if err := fh.Close(); err != nil {
			return fmt.Errorf("pki: writing %s: %w", p, err)
		}
		// O_CREATE honours the umask; make the mode exact.
		if err := os.Chmod(p, f.mode); err != nil {
			return fmt.Errorf("pki: chmod %s: %w", p, err)
		}
	}
	return nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("pki: encoding key: %w", err)
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func mustSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("pki: reading random serial: %v", err)) // crypto/rand never fails on supported platforms
	}
	return n.Add(n, big.NewInt(1))
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("reading random bytes: %w", err)
	}
	return b, nil
}

// NewTokenSecret returns a fresh API token secret: 32 random bytes,
// base64url without padding (43 characters).
func NewTokenSecret() (string, error) {
	b, err := randomBytes(32)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// LoadGossipKey reads a memberlist encryption key: base64 (standard
// encoding, surrounding whitespace ignored) of 16, 24 or 32 bytes.
func LoadGossipKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return nil, fmt.Errorf("gossip key %s: file is empty", path)
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("gossip key %s: not valid base64: %w", path, err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	default:
		return nil, fmt.Errorf("gossip key %s: decodes to %d bytes; must be 16, 24 or 32", path, len(key))
	}
}
