package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/controller/vsphere"
)

// wantErr is one expected "FILE:LINE: reason" line.
type wantErr struct {
	line   int
	reason string // substring of the text after "FILE:LINE: "
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	writeFixtures(t, dir)
	tests := []struct {
		file string
		want []wantErr
	}{
		// YAML syntax and structure.
		{"syntax.yaml", []wantErr{{13, "invalid YAML: did not find expected ',' or '}'"}}},
		{"unknown_key.yaml", []wantErr{{11, "tls.keyfile: unknown key"}}},
		{"unknown_top_key.yaml", []wantErr{{13, "raft_timeout: unknown key"}}},
		{"duplicate_key.yaml", []wantErr{{13, "node_name: duplicate key (first defined at line 1)"}}},
		{"multi_doc.yaml", []wantErr{{13, "more than one YAML document"}}},
		{"top_level_list.yaml", []wantErr{{1, "the top level must be a mapping"}}},
		// Types.
		{"bad_type.yaml", []wantErr{{5, `bootstrap_expect: must be an integer, got "three"`}}},
		{"bad_duration.yaml", []wantErr{{14, `raft.heartbeat_timeout: must be a duration such as 500ms, 2s or 1m, got "5x"`}}},
		{"duration_no_unit.yaml", []wantErr{{14, `raft.commit_timeout: must be a duration such as 500ms, 2s or 1m, got "50" (a unit is required, e.g. 50ms)`}}},
		// Names and addresses.
		{"bad_name.yaml", []wantErr{{1, `node_name: "N1_x" must match [a-z0-9][a-z0-9-]{0,62}`}}},
		{"missing_name.yaml", []wantErr{{1, "node_name: required"}}},
		{"missing_data_dir.yaml", []wantErr{{1, "data_dir: required"}}},
		{"data_dir_is_file.yaml", []wantErr{{2, "data_dir: " + filepath.Join(dir, "tokens.yaml") + " exists and is not a directory"}}},
		{"bad_bind.yaml", []wantErr{{3, `bind_addr: "localhost" is not an IP address`}}},
		{"advertise_required.yaml", []wantErr{{1, "advertise_addr: required when bind_addr is 0.0.0.0"}}},
		{"advertise_unspecified.yaml", []wantErr{{4, "advertise_addr: :: cannot be advertised"}}},
		{"advertise_not_ip.yaml", []wantErr{{4, `advertise_addr: "n1.lab.internal" is not an IP address`}}},
		{"bad_join.yaml", []wantErr{{8, `join[1]: "127.0.0.3": must be host:port`}}},
		{"bad_join_port.yaml", []wantErr{{6, `join[1]: "127.0.0.3:0": port "0" is not 1..65535`}}},
		// Ports and counts.
		{"port_range.yaml", []wantErr{{4, "ports.raft: 70000 is not a port (1..65535)"}}},
		{"port_zero.yaml", []wantErr{{5, "ports.api: 0 is not a port (1..65535)"}}},
		{"port_dup.yaml", []wantErr{{4, "ports.gossip: port 7500 is already used by ports.api"}}},
		{"negative_bootstrap.yaml", []wantErr{{5, "bootstrap_expect: must be >= 0"}}},
		{"min_voters.yaml", []wantErr{{14, "membership.min_voters: must be >= 1, got 0"}}},
		{"suspicion_mult.yaml", []wantErr{{14, "gossip.suspicion_mult: must be >= 1, got 0"}}},
		{"snapshot_threshold_zero.yaml", []wantErr{{14, "raft.snapshot_threshold: must be > 0"}}},
		// Durations.
		{"zero_duration.yaml", []wantErr{{14, "raft.commit_timeout: must be > 0, got 0s"}}},
		{"negative_duration.yaml", []wantErr{{14, "membership.reap_failed_after: must be > 0, got -5m0s"}}},
		{"disk_zero.yaml", []wantErr{
			{14, "disk.min_free_bytes: must be >= 1, got 0"},
			{15, "disk.check_interval: must be > 0, got 0s"},
		}},
		{"too_small_duration.yaml", []wantErr{
			{14, "raft.heartbeat_timeout: must be at least 5ms, got 1ms"},
			{15, "raft.leader_lease_timeout: must be at least 5ms, got 1ms"},
		}},
		{"lease_gt_heartbeat.yaml", []wantErr{{13, "raft.leader_lease_timeout: 500ms must not exceed raft.heartbeat_timeout (200ms)"}}},
		{"election_lt_heartbeat.yaml", []wantErr{{15, "raft.election_timeout: 500ms must not be shorter than raft.heartbeat_timeout (1s)"}}},
		{"probe_timeout.yaml", []wantErr{{15, "gossip.probe_timeout: 100ms must be shorter than gossip.probe_interval (100ms)"}}},
		// Files.
		{"missing_file.yaml", []wantErr{{10, "tls.key_file: open " + filepath.Join(dir, "missing-key.pem") + ": no such file or directory"}}},
		{"missing_tls_key.yaml", []wantErr{{7, "tls.key_file: required"}}},
		{"missing_tls.yaml", []wantErr{{1, "tls.ca_file: required"}, {1, "tls.cert_file: required"}, {1, "tls.key_file: required"}}},
		{"dir_not_file.yaml", []wantErr{{12, "tokens_file: " + dir + " is not a regular file"}}},
		{"mismatched_key.yaml", []wantErr{{9, "tls.cert_file: cannot use certificate"}}},
		{"ca_not_pem.yaml", []wantErr{{8, "tls.ca_file: " + filepath.Join(dir, "tokens.yaml") + " holds no PEM certificate"}}},
		{"bad_gossip_key.yaml", []wantErr{{11, "gossip_key_file: " + filepath.Join(dir, "bad-gossip.key") + ": not base64"}}},
		{"short_gossip_key.yaml", []wantErr{{11, "key is 8 bytes, want 16, 24 or 32"}}},
		// Enumerations and optional sections.
		{"log_level.yaml", []wantErr{{14, `log.level: "verbose" must be debug, info, warn or error`}}},
		{"log_format.yaml", []wantErr{{13, `log.format: "xml" must be text or json`}}},
		{"vcenter_incomplete.yaml", []wantErr{
			{13, "vcenter.username: required"},
			{13, "vcenter.password_file: required"},
			{14, `vcenter.url: "ftp://vcenter.lab.internal" must be an https:// URL`},
		}},
		{"vcenter_thumbprint.yaml", []wantErr{{17, `vcenter.thumbprint: thumbprint "AB:CD" must be a SHA-256 (or SHA-1) fingerprint`}}},
		{"vcenter_insecure.yaml", []wantErr{
			{17, "vcenter.thumbprint: use either ca_file or thumbprint, not both"},
			{18, "vcenter.insecure: contradicts ca_file/thumbprint"},
		}},
		{"vcenter_http.yaml", []wantErr{{14, `vcenter.url: "http://vcenter.lab.internal/sdk" is plain http, which sends the password in clear`}}},
		{"vcenter_timeouts.yaml", []wantErr{
			{17, "vcenter.call_timeout: must be > 0 and at most 1m, got 0s"},
			{18, "vcenter.task_timeout: must be > 0 and at most 1h, got -1s"},
			{19, "vcenter.max_attempts: must be 1-10, got 11"},
			{20, "vcenter.keepalive_interval: must be between 1s and 10m"},
		}},
		{"vcenter_password_empty.yaml", []wantErr{{16, "vcenter.password_file: vcenter password file " + filepath.Join(dir, "empty.password") + " is empty"}}},
		{"vcenter_ca_not_pem.yaml", []wantErr{{17, "vcenter.ca_file: " + filepath.Join(dir, "tokens.yaml") + " holds no PEM certificate"}}},
		// Several vCenters.
		{"vcenters_and_vcenter.yaml", []wantErr{{17, "vcenters: use either vcenter (one vCenter) or vcenters (a list), not both: move the vcenter section into vcenters"}}},
		{"vcenters_names.yaml", []wantErr{
			{14, "vcenters[0].name: required: replicas name their vCenter by it"},
			{17, `vcenters[1].name: "VC East" must match [a-z0-9][a-z0-9._-]{0,62}`},
			{25, `vcenters[3].name: "west" is already the name of vcenters[2]`},
			{26, "vcenters[3].url: https://VC3.lab.internal:443/sdk is already configured as vcenters[2]: one entry per vCenter"},
			{30, "vcenters[4].url: https://vc3.lab.internal/sdk/ is already configured as vcenters[2]"},
		}},
		{"vcenters_entry_errors.yaml", []wantErr{
			{14, "vcenters[0].password_file: required (or the password in the environment variable ARS_VCENTER_PASSWORD_VC_EAST)"},
			{18, `vcenters[1].url: "http://vc2.lab.internal/sdk" is plain http`},
			{21, "vcenters[1].call_timeout: must be > 0 and at most 1m, got 2m0s"},
		}},
		{"vcenter_bad_name.yaml", []wantErr{{14, `vcenter.name: "Lab" must match`}}},
		{"docker_bad_endpoint.yaml", []wantErr{
			{17, `docker.hosts[1].name: "lx1" is listed twice`},
			{18, `docker.hosts[1].endpoint: "ssh://lx2" must be unix://PATH or tcp://HOST:PORT`},
			{19, `docker.hosts[1].address_mode: "nat" must be helper or endpoint`},
		}},
		{"notify_errors.yaml", []wantErr{
			{16, "notify[0].exec.path: stat " + filepath.Join(dir, "missing.sh") + ": no such file or directory"},
			{17, "notify[0].exec.timeout: must be > 0 and at most 10m, got 0s"},
			{18, `notify[1].name: "pager" is listed twice`},
			{20, "notify[1].webhook.url: must be http(s)://HOST/PATH"},
			{21, "notify[1].webhook.secret_file: webhook secret file " + filepath.Join(dir, "empty.password") + " is empty"},
			{22, "notify[1].webhook.timeout: must be > 0 and at most 1m, got 2m0s"},
			{23, "notify[1].webhook.max_attempts: must be 1-20, got 0"},
			{24, "notify[1].webhook.queue: must be 1-100000, got -1"},
			{25, `notify[2].name: "Both" must match`},
			{26, "notify[2].exec.path: " + filepath.Join(dir, "tokens.yaml") + " is not an executable file"},
			{27, "notify[2].webhook: give exec or webhook, not both"},
			{27, "notify[2].webhook.url: must not carry credentials"},
			{28, "notify[3]: give exec or webhook"},
		}},
		// Several problems are all reported, in line order.
		{"two_errors.yaml", []wantErr{{1, `node_name: "-n1" must match`}, {5, "bootstrap_expect: must be >= 0"}}},
	}
	covered := map[string]bool{"valid.yaml": true, "valid_minimal.yaml": true, "null_sections.yaml": true, "vcenter_env_password.yaml": true,
		"vcenters_valid.yaml": true, "notify_valid.yaml": true}
	for _, tt := range tests {
		covered[tt.file] = true
		t.Run(strings.TrimSuffix(tt.file, ".yaml"), func(t *testing.T) {
			path := copyTestdata(t, dir, tt.file)
			a, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want an error", tt.file, a)
			}
			if a != nil {
				t.Errorf("Load returned a config together with an error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d error lines, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				prefix := path + ":" + strconv.Itoa(w.line) + ": "
				if !strings.HasPrefix(lines[i], prefix) {
					t.Errorf("error %d = %q, want prefix %q", i, lines[i], prefix)
					continue
				}
				if !strings.Contains(strings.TrimPrefix(lines[i], prefix), w.reason) {
					t.Errorf("error %d = %q, want reason containing %q", i, lines[i], w.reason)
				}
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File != path || ce.Line != tt.want[0].line {
				t.Errorf("errors.As(*Error) = %+v, want File %s Line %d", ce, path, tt.want[0].line)
			}
		})
	}
	// Every testdata file is exercised by some test.
	ents, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !covered[e.Name()] && !e.IsDir() {
			t.Errorf("testdata/%s is not used by any test case", e.Name())
		}
	}
}

func TestLoadValid(t *testing.T) {
	dir := t.TempDir()
	writeFixtures(t, dir)
	a, err := Load(copyTestdata(t, dir, "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Agent{
		NodeName:        "n1",
		DataDir:         filepath.Join(dir, "data/n1"),
		BindAddr:        "127.0.0.1",
		AdvertiseAddr:   "127.0.0.1", // defaulted from bind_addr
		Ports:           Ports{API: 7500, Raft: 7501, Gossip: 7502},
		BootstrapExpect: 3,
		Join:            []string{"127.0.0.2:7502", "127.0.0.3:7502"},
		TLS: TLS{
			CAFile:   filepath.Join(dir, "ca.pem"),
			CertFile: filepath.Join(dir, "n1.pem"),
			KeyFile:  filepath.Join(dir, "n1-key.pem"),
		},
		GossipKeyFile: filepath.Join(dir, "gossip.key"),
		TokensFile:    filepath.Join(dir, "tokens.yaml"),
		Raft:          Default().Raft,
		Gossip:        Default().Gossip,
		Membership:    Default().Membership,
		Disk:          Default().Disk,
		Log:           Log{Level: "info", Format: "text"},
		VCenter: &VCenter{
			URL:               "https://vcenter.lab.internal/sdk",
			Username:          "ars@vsphere.local",
			PasswordFile:      filepath.Join(dir, "vcenter.password"),
			Thumbprint:        "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
			CallTimeout:       500 * time.Millisecond,
			TaskTimeout:       vsphere.DefaultTaskTimeout,
			MaxAttempts:       vsphere.DefaultMaxAttempts,
			KeepAliveInterval: vsphere.DefaultKeepAlive,
		},
		Docker: Docker{Hosts: []DockerHost{
			{Name: "lx1", Endpoint: "unix:///var/run/docker.sock"},
			{Name: "lx2", Endpoint: "tcp://127.0.0.1:2376", TLS: TLS{
				CAFile:   filepath.Join(dir, "ca.pem"),
				CertFile: filepath.Join(dir, "n1.pem"),
				KeyFile:  filepath.Join(dir, "n1-key.pem"),
			}, AddressMode: "endpoint"},
		}, HelperImage: "ars/nethelper:latest"},
		File: filepath.Join(dir, "valid.yaml"),
	}
	a.lines = nil
	if !reflect.DeepEqual(a, want) {
		t.Errorf("Load(valid.yaml) =\n%+v\nwant\n%+v", a, want)
	}
}

func TestLoadMinimalGetsDefaults(t *testing.T) {
	dir := t.TempDir()
	writeFixtures(t, dir)
	for _, name := range []string{"valid_minimal.yaml", "null_sections.yaml"} {
		a, err := Load(copyTestdata(t, dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		d := Default()
		if a.Raft != d.Raft || a.Gossip != d.Gossip || a.Membership != d.Membership || a.Disk != d.Disk || a.Log != d.Log {
			t.Errorf("%s: defaults not applied: raft %+v gossip %+v membership %+v disk %+v log %+v", name, a.Raft, a.Gossip, a.Membership, a.Disk, a.Log)
		}
		if a.VCenter != nil || len(a.Docker.Hosts) != 0 {
			t.Errorf("%s: optional sections set: %+v %+v", name, a.VCenter, a.Docker)
		}
	}
}

func TestLoadRelativeToConfigDir(t *testing.T) {
	// Relative paths resolve against the config file, not the working dir.
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFixtures(t, certs)
	conf := filepath.Join(dir, "conf")
	if err := os.Mkdir(conf, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := `node_name: n1
data_dir: ../data
bind_addr: 127.0.0.1
tls: {ca_file: ../certs/ca.pem, cert_file: ../certs/n1.pem, key_file: ../certs/n1-key.pem}
gossip_key_file: ../certs/gossip.key
tokens_file: ../certs/tokens.yaml
`
	p := filepath.Join(conf, "agent.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if a.TLS.CAFile != filepath.Join(certs, "ca.pem") || a.DataDir != filepath.Join(dir, "data") {
		t.Errorf("paths not resolved against %s: tls %+v data_dir %s", conf, a.TLS, a.DataDir)
	}
}

func TestLoadMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+":1: ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want %s:1: ... wrapping os.ErrNotExist", err, p)
	}
}

func TestDevIsValid(t *testing.T) {
	d := Dev()
	if err := d.Validate(); err != nil {
		t.Fatalf("Dev().Validate() = %v", err)
	}
	if !d.Dev || d.DataDir != "" || d.BindAddr != "127.0.0.1" || d.AdvertiseAddr != "127.0.0.1" ||
		d.Ports.API != 7500 || !d.TLS.IsZero() || d.TokensFile != "" || d.GossipKeyFile != "" || d.BootstrapExpect != 1 {
		t.Errorf("Dev() = %+v", d)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	// An Agent built in code has no file: errors carry no "FILE:LINE: ".
	a := Default()
	a.NodeName = "n1"
	a.Dev = true
	a.BindAddr = "127.0.0.1"
	a.Raft.LeaderLeaseTimeout = time.Second
	err := a.Validate()
	if err == nil || err.Error() != "raft.leader_lease_timeout: 1s must not exceed raft.heartbeat_timeout (500ms)" {
		t.Errorf("Validate() = %v", err)
	}
	if err := Default().Validate(); err == nil {
		t.Errorf("Default().Validate() = nil; node_name etc. have no default")
	}
}

// The vCenter password comes from password_file, else from the environment;
// with neither the configuration is refused.
func TestVCenterPasswordSources(t *testing.T) {
	dir := t.TempDir()
	writeFixtures(t, dir)
	path := copyTestdata(t, dir, "vcenter_env_password.yaml")
	t.Setenv(PasswordEnv, "")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "vcenter.password_file: required (or the password in the environment variable ARS_VCENTER_PASSWORD)") {
		t.Fatalf("no password source: %v", err)
	}
	t.Setenv(PasswordEnv, "from-env")
	a, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if pw, err := a.VCenter.Password(); err != nil || pw != "from-env" {
		t.Fatalf("password = %q, %v", pw, err)
	}
	// A password file wins over the environment; its trailing newline is not part of it.
	a.VCenter.PasswordFile = filepath.Join(dir, "vcenter.password")
	if pw, err := a.VCenter.Password(); err != nil || pw != "hunter2" {
		t.Fatalf("password = %q, %v", pw, err)
	}
	a.VCenter.PasswordFile = filepath.Join(dir, "missing.password")
	if _, err := a.VCenter.Password(); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("missing file: %v", err)
	}
}

// The vcenter shorthand is a list of one, named after its host; vcenters
// keeps its entries' names, order and defaults, and an entry's password
// can come from its own environment variable.
func TestVCenterList(t *testing.T) {
	dir := t.TempDir()
	writeFixtures(t, dir)
	t.Setenv(PasswordEnv, "")
	t.Setenv(PasswordEnv+"_VC_WEST_LAB", "west-secret")
	a, err := Load(copyTestdata(t, dir, "vcenters_valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	l := a.VCenterList()
	if len(l) != 2 || l[0].Name != "vc-east" || l[1].Name != "vc-west.lab" {
		t.Fatalf("VCenterList = %+v", l)
	}
	if l[0].CallTimeout != 500*time.Millisecond || l[1].CallTimeout != vsphere.DefaultCallTimeout ||
		l[1].TaskTimeout != vsphere.DefaultTaskTimeout || l[1].CAFile != filepath.Join(dir, "ca.pem") {
		t.Errorf("defaults and paths: %+v", l)
	}
	if pw, err := l[1].Password(); err != nil || pw != "west-secret" {
		t.Errorf("vc-west.lab password = %q, %v", pw, err)
	}
	if pw, err := l[0].Password(); err != nil || pw != "hunter2" {
		t.Errorf("vc-east password = %q, %v", pw, err)
	}
	// With two vCenters the shared variable is not read: it would give
	// both the same password without anyone deciding so.
	t.Setenv(PasswordEnv+"_VC_WEST_LAB", "")
	t.Setenv(PasswordEnv, "shared")
	if _, err := l[1].Password(); err == nil || !strings.Contains(err.Error(), "vcenters[1].password_file or ARS_VCENTER_PASSWORD_VC_WEST_LAB") {
		t.Errorf("no password of its own: %v", err)
	}
	// A list of one reads the shared variable too.
	one := &Agent{VCenters: a.VCenters[1:]}
	if pw, err := one.VCenterList()[0].Password(); err != nil || pw != "shared" {
		t.Errorf("only vCenter: password = %q, %v", pw, err)
	}

	b, err := Load(copyTestdata(t, dir, "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if l := b.VCenterList(); len(l) != 1 || l[0].Name != "vcenter.lab.internal" || l[0].URL != b.VCenter.URL {
		t.Errorf("shorthand VCenterList = %+v", l)
	}
	if l := (&Agent{}).VCenterList(); l != nil {
		t.Errorf("no vCenter: %+v", l)
	}
	if got := DefaultVCenterName("https://127.0.0.1:8989/sdk"); got != "127.0.0.1:8989" {
		t.Errorf("DefaultVCenterName = %q", got)
	}
}

// A key with spaces (found by FuzzLoad) is quoted, so every error line keeps
// the FILE:LINE: field: reason shape.
func TestOddKeyIsQuoted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd.yaml")
	if err := os.WriteFile(path, []byte("\"  0 0 0 0 0\": \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	want := path + `:1: "  0 0 0 0 0": unknown key`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestLoadNotify(t *testing.T) {
	dir := t.TempDir()
	writeFixtures(t, dir)
	a, err := Load(copyTestdata(t, dir, "notify_valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []NotifySink{
		{Name: "pager", Exec: &NotifyExec{Path: filepath.Join(dir, "notify.sh"), Args: []string{"--cluster", "lab"}, Timeout: 10 * time.Second}},
		{Name: "hook", Webhook: &NotifyWebhook{URL: "https://hooks.lab.internal/ars", SecretFile: filepath.Join(dir, "hook.secret"),
			Timeout: 5 * time.Second, MaxAttempts: 8, Queue: 1024}},
	}
	if !reflect.DeepEqual(a.Notify, want) {
		t.Errorf("notify %+v %+v %+v, want %+v %+v %+v", a.Notify[0], a.Notify[0].Exec, a.Notify[1].Webhook, want[0], want[0].Exec, want[1].Webhook)
	}
	// The secret is read to check it, never shown.
	if strings.Contains(fmt.Sprintf("%+v", a.Notify[1].Webhook), "hook-s3cret") {
		t.Error("the webhook secret is in the configuration")
	}
	// Without a notify section, no sink.
	b, err := Load(copyTestdata(t, dir, "valid_minimal.yaml"))
	if err != nil || len(b.Notify) != 0 {
		t.Errorf("minimal config: notify %v, err %v", b.Notify, err)
	}
}
