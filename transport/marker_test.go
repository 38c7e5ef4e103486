package transport

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"strings"
	"testing"
)

// TestMarkers checks the marker rules on certificate fields alone: either
// half of the replica marker suffices to refuse a certificate and to deny
// it the node role; the URI SAN names the replica before OU and CN do.
func TestMarkers(t *testing.T) {
	uri := func(s string) []*url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return []*url.URL{u}
	}
	subject := func(cn string, ous ...string) pkix.Name { return pkix.Name{CommonName: cn, OrganizationalUnit: ous} }
	for _, c := range []struct {
		what          string
		cert          x509.Certificate
		marked        bool
		node, replica string
	}{
		{"node URI and OU", x509.Certificate{Subject: subject("n1", NodeOU), URIs: uri("ars://node/n1")}, false, "n1", ""},
		{"replica URI only", x509.Certificate{Subject: subject("x"), URIs: uri("ars://replica/r1")}, true, "", "r1"},
		{"replica OU only", x509.Certificate{Subject: subject("r1", ReplicaOU)}, true, "", "r1"},
		{"replica URI wins over CN", x509.Certificate{Subject: subject("r2", ReplicaOU), URIs: uri("ars://replica/r1")}, true, "", "r1"},
		{"replica OU in another case", x509.Certificate{Subject: subject("r1", "ARS-Replica")}, true, "", ""},
		{"replica URI host in another case", x509.Certificate{Subject: subject("x"), URIs: uri("ars://REPLICA/r1")}, true, "", ""},
		{"replica URI with a bad name", x509.Certificate{Subject: subject("x"), URIs: uri("ars://replica/R%201")}, true, "", ""},
		{"node URI and replica OU", x509.Certificate{Subject: subject("n1", ReplicaOU), URIs: uri("ars://node/n1")}, true, "", "n1"},
		{"node OU and replica URI", x509.Certificate{Subject: subject("n1", NodeOU), URIs: uri("ars://replica/r1")}, true, "", "r1"},
		{"neither", x509.Certificate{Subject: subject("operator-alice", "operators")}, false, "", ""},
	} {
		if got := hasReplicaMarker(&c.cert); got != c.marked {
			t.Errorf("%s: hasReplicaMarker = %v", c.what, got)
		}
		if name, ok := nodeNameFromCert(&c.cert); name != c.node || ok != (c.node != "") {
			t.Errorf("%s: nodeNameFromCert = %q %v, want %q", c.what, name, ok, c.node)
		}
		if name, ok := ReplicaNameOf(&c.cert); name != c.replica || ok != (c.replica != "") {
			t.Errorf("%s: ReplicaNameOf = %q %v, want %q", c.what, name, ok, c.replica)
		}
	}
}

func TestReplicaNames(t *testing.T) {
	for name, want := range map[string]bool{
		"r1": true, "win-bind": true, "lin.unbound_2": true, "0": true, strings.Repeat("a", 63): true,
		"": false, "R1": false, "-r1": false, ".r1": false, "r 1": false, "r/1": false, strings.Repeat("a", 64): false,
	} {
		if got := ValidReplicaName(name); got != want {
			t.Errorf("ValidReplicaName(%q) = %v", name, got)
		}
	}
	if u := ReplicaURI("lin.unbound").String(); u != "ars://replica/lin.unbound" {
		t.Errorf("ReplicaURI = %s", u)
	}
}
