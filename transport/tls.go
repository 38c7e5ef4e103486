package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Node certificates. A certificate issued by the cluster CA identifies a
// controller node (role "node") when it carries the node marker:
//
//   - a URI SAN "ars://node/<name>" (authoritative), or
//   - Subject OU "ars-node", with the node name in the Subject CN.
//
// GeneratePKI writes both. Operator client certificates issued by the same
// CA without the marker are ordinary TLS clients and authenticate with
// tokens.
const (
	NodeOU        = "ars-node"
	NodeURIScheme = "ars"
	NodeURIHost   = "node"
)

// NodeURI is the URI SAN that marks a node certificate for name.
func NodeURI(name string) *url.URL {
	return &url.URL{Scheme: NodeURIScheme, Host: NodeURIHost, Path: "/" + name}
}

var nodeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidNodeName reports whether name can name a node: 1-63 lowercase
// letters, digits and dashes, starting with a letter or digit.
func ValidNodeName(name string) bool { return nodeNameRE.MatchString(name) }

// marker is one kind of certificate marker: a URI SAN ars://HOST/NAME
// (authoritative), or Subject OU with the name in the Subject CN, the
// name matching re.
type marker struct {
	host, ou string
	re       *regexp.Regexp
}

var (
	nodeMarker    = marker{NodeURIHost, NodeOU, nodeNameRE}
	replicaMarker = marker{ReplicaURIHost, ReplicaOU, replicaNameRE}
)

// name extracts the name the marker gives c.
func (m marker) name(c *x509.Certificate) (string, bool) {
	if c == nil {
		return "", false
	}
	for _, u := range c.URIs {
		if u.Scheme == NodeURIScheme && u.Host == m.host && len(u.Path) > 1 {
			if name := u.Path[1:]; m.re.MatchString(name) {
				return name, true
			}
		}
	}
	if slices.Contains(c.Subject.OrganizationalUnit, m.ou) && m.re.MatchString(c.Subject.CommonName) {
		return c.Subject.CommonName, true
	}
	return "", false
}

// verifiedPeer is the peer's certificate of a TLS connection if it was
// verified against the configured CA (nil otherwise: unverified
// certificates never count).
func verifiedPeer(cs *tls.ConnectionState) *x509.Certificate {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	return cs.PeerCertificates[0]
}

// nodeNameFromCert extracts the node name from a certificate's marker. A
// certificate with any trace of the replica marker is never a node, even
// if it carries the node marker too.
func nodeNameFromCert(c *x509.Certificate) (string, bool) {
	if c == nil || hasReplicaMarker(c) {
		return "", false
	}
	return nodeMarker.name(c)
}

// NodeName returns the node name of the peer of a TLS connection if the
// peer presented a certificate that was verified against the configured CA
// and carries the node marker.
func NodeName(cs *tls.ConnectionState) (string, bool) {
	return nodeNameFromCert(verifiedPeer(cs))
}

// Replica certificates. A certificate issued by the cluster CA identifies
// the replica agent of one DNS replica when it carries the replica marker:
//
//   - a URI SAN "ars://replica/<name>" (authoritative), or
//   - Subject OU "ars-replica", with the replica name in the Subject CN.
//
// pki.IssueReplicaCert writes both, and only for server authentication.
// A replica certificate serves the replica agent's listener and nothing
// else: it is never a node (nodeNameFromCert), and every configuration
// built here except AgentServerTLS refuses a peer that presents one.
const (
	ReplicaOU      = "ars-replica"
	ReplicaURIHost = "replica"
)

// ReplicaURI is the URI SAN that marks a replica certificate for name.
func ReplicaURI(name string) *url.URL {
	return &url.URL{Scheme: NodeURIScheme, Host: ReplicaURIHost, Path: "/" + name}
}

// replicaNameRE is the rule of fsm replica names (transport does not
// import fsm).
var replicaNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidReplicaName reports whether name can name a replica: 1-63
// lowercase letters, digits, dots, underscores and dashes, starting with a
// letter or digit (the rule of replica names in a service spec).
func ValidReplicaName(name string) bool { return replicaNameRE.MatchString(name) }

// hasReplicaMarker reports any trace of the replica marker: a URI SAN
// ars://replica/... whatever its path, or the replica OU (both compared
// without regard to case). It decides refusals, so it errs on the side of
// seeing the marker.
func hasReplicaMarker(c *x509.Certificate) bool {
	for _, u := range c.URIs {
		if strings.EqualFold(u.Scheme, NodeURIScheme) && strings.EqualFold(u.Host, ReplicaURIHost) {
			return true
		}
	}
	return slices.ContainsFunc(c.Subject.OrganizationalUnit, func(ou string) bool {
		return strings.EqualFold(ou, ReplicaOU)
	})
}

// ReplicaNameOf is the replica named by a certificate's replica marker
// (the replica agent checks its own certificate with it).
func ReplicaNameOf(c *x509.Certificate) (string, bool) { return replicaMarker.name(c) }

// ReplicaName returns the replica name of the peer of a TLS connection if
// the peer presented a certificate that was verified against the
// configured CA and carries the replica marker.
func ReplicaName(cs *tls.ConnectionState) (string, bool) {
	return ReplicaNameOf(verifiedPeer(cs))
}

// TLSFiles names PEM files: the cluster CA certificate, and this party's
// certificate and private key.
type TLSFiles struct{ CA, Cert, Key string }

func loadCAPool(path string) (*x509.CertPool, error) {
	pemData, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("tls: CA file %s contains no PEM certificate", path)
	}
	return pool, nil
}

func loadKeyPair(f TLSFiles) (tls.Certificate, error) {
	if f.Cert == "" || f.Key == "" {
		return tls.Certificate{}, errors.New("tls: both a certificate and a key file are required")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: loading key pair %s / %s: %w", f.Cert, f.Key, err)
	}
	return cert, nil
}

// leafOf returns the parsed leaf certificate of a loaded key pair.
func leafOf(c tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// ServerTLS is the TLS configuration for a listener (the API or the Raft
// stream layer): TLS 1.2 or newer, this node's certificate, and client
// certificates verified against the CA — always required when
// requireClientCert is set, otherwise verified if the client offers one
// (nodes do; operators with tokens need not). A client certificate with
// the replica marker fails the handshake.
func ServerTLS(f TLSFiles, requireClientCert bool) (*tls.Config, error) {
	cfg, err := serverTLS(f, requireClientCert)
	if err != nil {
		return nil, err
	}
	refuseReplicaPeer(cfg, "client")
	return cfg, nil
}

// serverTLS is ServerTLS without the refusal of replica certificates.
func serverTLS(f TLSFiles, requireClientCert bool) (*tls.Config, error) {
	if f.CA == "" {
		return nil, errors.New("tls: a CA file is required")
	}
	pool, err := loadCAPool(f.CA)
	if err != nil {
		return nil, err
	}
	cert, err := loadKeyPair(f)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		RootCAs:      pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
	if requireClientCert {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientTLS is the TLS configuration for a client: TLS 1.2 or newer, the
// server verified against the CA (the system roots when f.CA is empty),
// and this party's certificate presented when f.Cert and f.Key are given.
// serverName overrides the name checked in the server certificate; empty
// means the host of the dialled address (node certificates from
// GeneratePKI carry their IPs, DNS names and node name as SANs). A server
// certificate with the replica marker fails the handshake.
func ClientTLS(f TLSFiles, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if f.CA != "" {
		pool, err := loadCAPool(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if f.Cert != "" || f.Key != "" {
		cert, err := loadKeyPair(f)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	refuseReplicaPeer(cfg, "server")
	return cfg, nil
}

// refuseReplicaPeer wraps cfg's VerifyConnection so that the handshake
// also fails when the peer's certificate carries the replica marker
// (verified or not). side names the peer in the error.
func refuseReplicaPeer(cfg *tls.Config, side string) {
	prev := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) > 0 && hasReplicaMarker(cs.PeerCertificates[0]) {
			return fmt.Errorf("tls: %s certificate (subject %q) is an ars replica certificate; replica certificates are only for the replica agent",
				side, cs.PeerCertificates[0].Subject.String())
		}
		return nil
	}
}

// RequireNodePeer wraps cfg's VerifyConnection so that the handshake also
// fails unless the peer's verified certificate carries the node marker.
func RequireNodePeer(cfg *tls.Config, side string) {
	prev := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("tls: %s presented no certificate", side)
		}
		if _, ok := NodeName(&cs); !ok {
			if hasReplicaMarker(cs.PeerCertificates[0]) {
				return fmt.Errorf("tls: %s certificate (subject %q) is an ars replica certificate, not a node certificate",
					side, cs.PeerCertificates[0].Subject.String())
			}
			return fmt.Errorf("tls: %s certificate (subject %q) is not an ars node certificate",
				side, cs.PeerCertificates[0].Subject.String())
		}
		return nil
	}
}

// AgentServerTLS is the TLS configuration for a replica agent's listener:
// TLS 1.2 or newer, the replica certificate f.Cert (which must carry the
// replica marker), and a client certificate required, verified against
// the CA and carrying the node marker: only a controller node may call
// the agent. A replica certificate is refused as a client like any other
// certificate without the node marker.
func AgentServerTLS(f TLSFiles) (*tls.Config, error) {
	cfg, err := serverTLS(f, true)
	if err != nil {
		return nil, err
	}
	leaf, err := leafOf(cfg.Certificates[0])
	if err != nil {
		return nil, fmt.Errorf("tls: parsing %s: %w", f.Cert, err)
	}
	if _, ok := ReplicaNameOf(leaf); !ok {
		return nil, fmt.Errorf("tls: %s (subject %q) is not an ars replica certificate; the replica agent needs one (ars keygen -replicas)",
			f.Cert, leaf.Subject.String())
	}
	RequireNodePeer(cfg, "replica agent client")
	return cfg, nil
}

// AgentClientTLS is the TLS configuration for a node's client of the
// replica agent of replica: TLS 1.2 or newer, the server verified against
// the CA f.CA (required) and the dialled host as usual (replica
// certificates carry the agent's addresses), and this node's certificate
// f.Cert/f.Key presented (required; it must carry the node marker). The
// handshake fails unless the server's certificate carries the replica
// marker for exactly replica.
func AgentClientTLS(f TLSFiles, replica string) (*tls.Config, error) {
	if !ValidReplicaName(replica) {
		return nil, fmt.Errorf("tls: replica name %q must match %s", replica, replicaNameRE)
	}
	if f.CA == "" {
		return nil, errors.New("tls: a CA file is required")
	}
	pool, err := loadCAPool(f.CA)
	if err != nil {
		return nil, err
	}
	cert, err := loadKeyPair(f)
	if err != nil {
		return nil, err
	}
	leaf, err := leafOf(cert)
	if err != nil {
		return nil, fmt.Errorf("tls: parsing %s: %w", f.Cert, err)
	}
	if _, ok := nodeNameFromCert(leaf); !ok {
		return nil, fmt.Errorf("tls: %s (subject %q) is not an ars node certificate; replica agents accept only nodes",
			f.Cert, leaf.Subject.String())
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      pool,
		Certificates: []tls.Certificate{cert},
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: replica agent presented no certificate")
		}
		got, ok := ReplicaName(&cs)
		if !ok {
			return fmt.Errorf("tls: replica agent certificate (subject %q) is not an ars replica certificate",
				cs.PeerCertificates[0].Subject.String())
		}
		if got != replica {
			return fmt.Errorf("tls: replica agent certificate names replica %q, want %q", got, replica)
		}
		return nil
	}
	return cfg, nil
}
