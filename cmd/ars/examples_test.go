package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ars-project/ars/cmd/ars/internal/config"
	"github.com/ars-project/ars/fsm"
)

const examplesDir = "../../deploy/examples"

// TestThreeNodeExamplesLoad follows docs/operations.md on a temporary copy:
// keygen creates certs/ next to the configs, then every config loads.
func TestThreeNodeExamplesLoad(t *testing.T) {
	src := filepath.Join(examplesDir, "three-node")
	dst := filepath.Join(t.TempDir(), "three-node")
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1.yaml", "n2.yaml", "n3.yaml"} {
		data, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, n), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Before keygen the configs are rejected, naming the missing file.
	_, err := config.Load(filepath.Join(dst, "n1.yaml"))
	if err == nil || !strings.Contains(err.Error(), "tls.ca_file: open "+filepath.Join(dst, "certs", "ca.pem")) {
		t.Errorf("Load before keygen = %v, want a missing tls.ca_file error", err)
	}

	ars(t, nil, "", "keygen", "-dir", filepath.Join(dst, "certs"), "-nodes", "n1=127.0.0.1,n2=127.0.0.2,n3=127.0.0.3").OK(t)

	seen := map[string]bool{}
	for i, name := range []string{"n1", "n2", "n3"} {
		a, err := config.Load(filepath.Join(dst, name+".yaml"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ip := "127.0.0." + string(rune('1'+i))
		if a.NodeName != name || a.BindAddr != ip || a.AdvertiseAddr != ip || a.BootstrapExpect != 3 ||
			a.Ports != (config.Ports{API: 7500, Raft: 7501, Gossip: 7502}) || len(a.Join) != 2 {
			t.Errorf("%s: %+v", name, a)
		}
		for _, j := range a.Join {
			if strings.HasPrefix(j, ip+":") {
				t.Errorf("%s joins itself: %v", name, a.Join)
			}
			seen[j] = true
		}
		if a.TLS.CertFile != filepath.Join(dst, "certs", name+".pem") || a.DataDir != filepath.Join(dst, "data", name) {
			t.Errorf("%s: paths not relative to the config: %+v data_dir %s", name, a.TLS, a.DataDir)
		}
		if d := config.Default(); a.Raft != d.Raft || a.Gossip != d.Gossip || a.Membership != d.Membership {
			t.Errorf("%s: the example's spelled-out timings differ from the defaults", name)
		}
	}
	if len(seen) != 3 {
		t.Errorf("the nodes do not join each other: %v", seen)
	}

	// The generated secrets are git-ignored.
	gi, err := os.ReadFile(filepath.Join(src, ".gitignore"))
	if err != nil || !strings.Contains(string(gi), "certs/") || !strings.Contains(string(gi), "data/") {
		t.Errorf(".gitignore does not cover certs/ and data/: %q (%v)", gi, err)
	}
}

// TestServiceExample: the sample DNS service is a valid fsm ServiceSpec.
func TestServiceExample(t *testing.T) {
	path := filepath.Join(examplesDir, "service-dns.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := specJSON(path, data)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := fsm.DecodeServiceSpec(js)
	if err != nil {
		t.Fatalf("service-dns.yaml is not a valid ServiceSpec: %v", err)
	}
	if spec.Probe.Query != "www.lab.internal." || spec.Probe.Expect != "192.0.2.10" {
		t.Errorf("probe = %+v", spec.Probe)
	}
	kinds := map[string]int{}
	for _, r := range spec.Replicas {
		kinds[r.Impl+"/"+r.OS+"/"+r.Platform]++
	}
	for _, want := range []string{"bind9/windows/vm", "unbound/windows/vm", "bind9/linux/container",
		"unbound/linux/container", "knot-resolver/linux/container", "pdns-recursor/linux/container"} {
		if kinds[want] != 1 {
			t.Errorf("replica kinds %v lack %s", kinds, want)
		}
	}
}

func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile("../../deploy/ars.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ExecStart=/usr/local/bin/ars agent -config /etc/ars/agent.yaml",
		"Restart=on-failure", "LimitNOFILE=", "NoNewPrivileges=yes", "ProtectSystem=strict",
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("ars.service lacks %q", want)
		}
	}
}
