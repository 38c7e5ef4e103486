package transport_test

import (
	"crypto/tls"
	"os"
	"testing"

	"github.com/ars-project/ars/test/testpki"
	"github.com/ars-project/ars/transport"
)

// pkiDir holds the cluster PKI of the tests; foreignDir another cluster's.
var pkiDir, foreignDir string

func TestMain(m *testing.M) { os.Exit(testpki.Main(m, &pkiDir, &foreignDir)) }

func nodeFiles(dir, node string) transport.TLSFiles { return testpki.NodeFiles(dir, node) }

func mustServerTLS(t testing.TB, dir, node string, require bool) *tls.Config {
	return testpki.ServerTLS(t, dir, node, require)
}

func mustClientTLS(t testing.TB, f transport.TLSFiles) *tls.Config { return testpki.ClientTLS(t, f) }

func caOnly(t testing.TB) *tls.Config { return testpki.CAOnly(t, pkiDir) }

func issueNonNodeCert(t testing.TB, cn string) tls.Certificate {
	return testpki.NonNodeCert(t, pkiDir, cn)
}
