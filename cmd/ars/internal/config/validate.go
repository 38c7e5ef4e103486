package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ars-project/ars/controller/vsphere"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/notify"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// validator collects problems with their lines.
type validator struct {
	a    *Agent
	errs []*Error
}

func (v *validator) add(field, format string, args ...any) {
	e := &Error{File: v.a.File, Field: field, Reason: fmt.Sprintf(format, args...)}
	if v.a.File != "" {
		e.Line = v.a.lineOf(field)
	}
	v.errs = append(v.errs, e)
}

// lineOf returns the line of field, else of its closest present parent, else 1.
func (a *Agent) lineOf(field string) int {
	for p := field; p != ""; {
		if l, ok := a.lines[p]; ok && l > 0 {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 1
}

// Validate checks every value and the files the configuration names. It
// reports all problems found, joined, each as "FILE:LINE: field: reason"
// (without "FILE:LINE: " if the Agent was not loaded from a file). Relative
// paths are taken relative to the working directory; Load has already made
// them relative to the config file.
func (a *Agent) Validate() error {
	v := &validator{a: a}

	switch {
	case a.NodeName == "":
		v.add("node_name", "required")
	case !nameRE.MatchString(a.NodeName):
		v.add("node_name", "%q must match [a-z0-9][a-z0-9-]{0,62}", a.NodeName)
	}

	if a.DataDir == "" && !a.Dev {
		v.add("data_dir", "required")
	} else if a.DataDir != "" {
		if fi, err := os.Stat(a.DataDir); err == nil && !fi.IsDir() {
			v.add("data_dir", "%s exists and is not a directory", a.DataDir)
		}
	}

	v.addresses()
	v.ports()

	if a.BootstrapExpect < 0 {
		v.add("bootstrap_expect", "must be >= 0 (0 = join an existing cluster only), got %d", a.BootstrapExpect)
	}
	for i, j := range a.Join {
		field := "join[" + strconv.Itoa(i) + "]"
		if err := checkHostPort(j); err != nil {
			v.add(field, "%q: %v", j, err)
		}
	}

	v.secrets()
	v.raft()
	v.gossip()

	if a.Membership.ReapFailedAfter <= 0 {
		v.add("membership.reap_failed_after", "must be > 0, got %s", a.Membership.ReapFailedAfter)
	}
	if a.Membership.MinVoters < 1 {
		v.add("membership.min_voters", "must be >= 1, got %d", a.Membership.MinVoters)
	}
	if a.Disk.MinFreeBytes < 1 {
		v.add("disk.min_free_bytes", "must be >= 1, got %d", a.Disk.MinFreeBytes)
	}
	if a.Disk.CheckInterval <= 0 {
		v.add("disk.check_interval", "must be > 0, got %s", a.Disk.CheckInterval)
	}
	if a.Disk.ProbeTimeout <= 0 {
		v.add("disk.probe_timeout", "must be > 0, got %s", a.Disk.ProbeTimeout)
	}

	switch a.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", "%q must be debug, info, warn or error", a.Log.Level)
	}
	switch a.Log.Format {
	case "text", "json":
	default:
		v.add("log.format", "%q must be text or json", a.Log.Format)
	}

	v.vcenters()
	v.docker()
	v.notify()
	return joinErrors(v.errs)
}

func (v *validator) addresses() {
	a := v.a
	bind, err := netip.ParseAddr(a.BindAddr)
	if err != nil {
		v.add("bind_addr", "%q is not an IP address", a.BindAddr)
	}
	switch {
	case a.AdvertiseAddr == "":
		if err == nil && bind.IsUnspecified() {
			v.add("advertise_addr", "required when bind_addr is %s", a.BindAddr)
		}
	default:
		adv, err := netip.ParseAddr(a.AdvertiseAddr)
		switch {
		case err != nil:
			v.add("advertise_addr", "%q is not an IP address", a.AdvertiseAddr)
		case adv.IsUnspecified():
			v.add("advertise_addr", "%s cannot be advertised; use an address other nodes can reach", a.AdvertiseAddr)
		}
	}
}

func (v *validator) ports() {
	p := v.a.Ports
	seen := map[int]string{}
	for _, pp := range []struct {
		field string
		port  int
	}{{"ports.api", p.API}, {"ports.raft", p.Raft}, {"ports.gossip", p.Gossip}} {
		if pp.port < 1 || pp.port > 65535 {
			v.add(pp.field, "%d is not a port (1..65535)", pp.port)
			continue
		}
		if other, dup := seen[pp.port]; dup {
			v.add(pp.field, "port %d is already used by %s", pp.port, other)
			continue
		}
		seen[pp.port] = pp.field
	}
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("must be host:port")
	}
	if host == "" {
		return fmt.Errorf("host is empty")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not 1..65535", port)
	}
	return nil
}

// secrets checks the TLS files, the gossip key and the tokens file.
func (v *validator) secrets() {
	a := v.a
	if !a.Dev || !a.TLS.IsZero() {
		v.tlsFiles("tls", a.TLS, true)
	}
	if a.GossipKeyFile == "" {
		if !a.Dev {
			v.add("gossip_key_file", "required")
		}
	} else if err := checkGossipKey(a.GossipKeyFile); err != nil {
		v.add("gossip_key_file", "%v", err)
	}
	if a.TokensFile == "" {
		if !a.Dev {
			v.add("tokens_file", "required")
		}
	} else if err := checkReadable(a.TokensFile); err != nil {
		v.add("tokens_file", "%v", err)
	}
}

// tlsFiles checks a TLS triple. With needCert the certificate and key are
// required; the CA is always required if anything is set.
func (v *validator) tlsFiles(prefix string, t TLS, needCert bool) {
	ok := true
	check := func(field, path string, required bool) {
		if path == "" {
			if required {
				v.add(prefix+"."+field, "required")
				ok = false
			}
			return
		}
		if err := checkReadable(path); err != nil {
			v.add(prefix+"."+field, "%v", err)
			ok = false
		}
	}
	check("ca_file", t.CAFile, true)
	check("cert_file", t.CertFile, needCert || t.KeyFile != "")
	check("key_file", t.KeyFile, needCert || t.CertFile != "")
	if !ok {
		return
	}
	if pem, err := os.ReadFile(t.CAFile); err == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
		v.add(prefix+".ca_file", "%s holds no PEM certificate", t.CAFile)
	}
	if t.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			v.add(prefix+".cert_file", "cannot use certificate %s with key %s: %v", t.CertFile, t.KeyFile, err)
		}
	}
}

func checkReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}

func checkGossipKey(path string) error {
	if err := checkReadable(path); err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return fmt.Errorf("%s: not base64: %v", path, err)
	}
	switch len(key) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("%s: key is %d bytes, want 16, 24 or 32", path, len(key))
}

func (v *validator) positive(field string, d time.Duration) bool {
	if d <= 0 {
		v.add(field, "must be > 0, got %s", d)
		return false
	}
	return true
}

// raft mirrors hashicorp/raft.ValidateConfig so problems show with a line.
func (v *validator) raft() {
	r := v.a.Raft
	const floor = 5 * time.Millisecond
	atLeast := func(field string, d, m time.Duration) bool {
		if !v.positive(field, d) {
			return false
		}
		if d < m {
			v.add(field, "must be at least %s, got %s", m, d)
			return false
		}
		return true
	}
	hb := atLeast("raft.heartbeat_timeout", r.HeartbeatTimeout, floor)
	el := atLeast("raft.election_timeout", r.ElectionTimeout, floor)
	ll := atLeast("raft.leader_lease_timeout", r.LeaderLeaseTimeout, floor)
	atLeast("raft.commit_timeout", r.CommitTimeout, time.Millisecond)
	atLeast("raft.snapshot_interval", r.SnapshotInterval, floor)
	if hb && ll && r.LeaderLeaseTimeout > r.HeartbeatTimeout {
		v.add("raft.leader_lease_timeout", "%s must not exceed raft.heartbeat_timeout (%s)", r.LeaderLeaseTimeout, r.HeartbeatTimeout)
	}
	if hb && el && r.ElectionTimeout < r.HeartbeatTimeout {
		v.add("raft.election_timeout", "%s must not be shorter than raft.heartbeat_timeout (%s)", r.ElectionTimeout, r.HeartbeatTimeout)
	}
	if r.SnapshotThreshold == 0 {
		v.add("raft.snapshot_threshold", "must be > 0")
	}
}

func (v *validator) gossip() {
	g := v.a.Gossip
	pi := v.positive("gossip.probe_interval", g.ProbeInterval)
	pt := v.positive("gossip.probe_timeout", g.ProbeTimeout)
	v.positive("gossip.gossip_interval", g.GossipInterval)
	if pi && pt && g.ProbeTimeout >= g.ProbeInterval {
		v.add("gossip.probe_timeout", "%s must be shorter than gossip.probe_interval (%s)", g.ProbeTimeout, g.ProbeInterval)
	}
	if g.SuspicionMult < 1 {
		v.add("gossip.suspicion_mult", "must be >= 1, got %d", g.SuspicionMult)
	}
}

// vcenters checks the vcenter shorthand or the vcenters list, each entry
// as vcenter() does, and what only the list can get wrong: names missing,
// malformed or used twice, and one vCenter listed twice (two sessions on
// it, and two names for its VMs).
func (v *validator) vcenters() {
	a := v.a
	if a.VCenter != nil && len(a.VCenters) > 0 {
		v.add("vcenters", "use either vcenter (one vCenter) or vcenters (a list), not both: "+
			"move the vcenter section into vcenters as one more entry, with a name")
		return
	}
	names := map[string]string{} // name -> field
	urls := map[string]string{}  // canonical URL -> field
	for _, vc := range a.VCenterList() {
		p := vc.field
		switch {
		case vc.listed && vc.Name == "":
			v.add(p+".name", "required: replicas name their vCenter by it (vcenter: NAME in the service spec)")
		case (vc.listed || a.VCenter.Name != "") && !fsm.VCenterNameRE.MatchString(vc.Name):
			v.add(p+".name", "%q must match [a-z0-9][a-z0-9._-]{0,62}", vc.Name)
		case names[vc.Name] != "":
			v.add(p+".name", "%q is already the name of %s", vc.Name, names[vc.Name])
		default:
			names[vc.Name] = p
		}
		if key := canonicalURL(vc.URL); key != "" {
			if other, dup := urls[key]; dup {
				v.add(p+".url", "%s is already configured as %s: one entry per vCenter (the leader holds one session for each)", vc.URL, other)
			} else {
				urls[key] = p
			}
		}
		v.vcenter(p, &vc)
	}
}

// canonicalURL is how two spellings of one vCenter's URL compare ("" for
// one that does not parse; vcenter() reports it).
func canonicalURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	scheme, port := strings.ToLower(u.Scheme), u.Port()
	if port == "" || (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	host := strings.ToLower(u.Hostname())
	if port != "" {
		host = net.JoinHostPort(host, port)
	}
	path := strings.TrimSuffix(u.Path, "/")
	if path == "" {
		path = "/sdk"
	}
	return scheme + "://" + host + path
}

// vcenter checks one vCenter entry whose fields are under prefix.
func (v *validator) vcenter(p string, vc *VCenter) {
	u, err := url.Parse(vc.URL)
	switch {
	case vc.URL == "":
		v.add(p+".url", "required")
	case err != nil:
		v.add(p+".url", "%q is not a URL", vc.URL)
	case u.Scheme != "https" && u.Scheme != "http" || u.Host == "":
		v.add(p+".url", "%q must be an https:// URL such as https://vcenter.example/sdk", vc.URL)
	case u.User != nil:
		v.add(p+".url", "must not carry credentials; use username and password_file")
	case u.Scheme == "http" && !vc.Insecure:
		v.add(p+".url", "%q is plain http, which sends the password in clear: use https (or insecure: true, labs only)", vc.URL)
	}
	if vc.Username == "" {
		v.add(p+".username", "required")
	}
	switch envs := vc.PasswordEnvNames(); {
	case vc.PasswordFile != "":
		if err := checkReadable(vc.PasswordFile); err != nil {
			v.add(p+".password_file", "%v", err)
		} else if _, err := vc.Password(); err != nil {
			v.add(p+".password_file", "%v", err)
		}
	case !anyEnvSet(envs):
		what := "the environment variable " + envs[0]
		if len(envs) > 1 {
			what = "one of the environment variables " + strings.Join(envs, ", ")
		}
		v.add(p+".password_file", "required (or the password in %s)", what)
	}
	if vc.CAFile != "" {
		if err := checkReadable(vc.CAFile); err != nil {
			v.add(p+".ca_file", "%v", err)
		} else if pem, err := os.ReadFile(vc.CAFile); err == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			v.add(p+".ca_file", "%s holds no PEM certificate", vc.CAFile)
		}
	}
	if vc.Thumbprint != "" {
		if _, err := vsphere.ParseThumbprint(vc.Thumbprint); err != nil {
			v.add(p+".thumbprint", "%v", err)
		} else if vc.CAFile != "" {
			v.add(p+".thumbprint", "use either ca_file or thumbprint, not both")
		}
	}
	if vc.Insecure && (vc.CAFile != "" || vc.Thumbprint != "") {
		v.add(p+".insecure", "contradicts ca_file/thumbprint: insecure skips the verification they configure")
	}
	// Zero means the default unless it was written in the file (Load fills
	// the defaults of keys that are absent).
	set := func(field string) bool { _, ok := v.a.lines[p+"."+field]; return ok }
	if d := vc.CallTimeout; (d == 0 && set("call_timeout")) || d < 0 || d > time.Minute {
		v.add(p+".call_timeout", "must be > 0 and at most 1m, got %s", d)
	}
	if d := vc.TaskTimeout; (d == 0 && set("task_timeout")) || d < 0 || d > time.Hour {
		v.add(p+".task_timeout", "must be > 0 and at most 1h, got %s", d)
	}
	if n := vc.MaxAttempts; (n == 0 && set("max_attempts")) || n < 0 || n > 10 {
		v.add(p+".max_attempts", "must be 1-10, got %d", n)
	}
	if d := vc.KeepAliveInterval; (d == 0 && set("keepalive_interval")) || d < 0 || (d > 0 && d < time.Second) || d > 10*time.Minute {
		v.add(p+".keepalive_interval", "must be between 1s and 10m (vCenter expires idle sessions after 30m by default), got %s", d)
	}
}

func anyEnvSet(names []string) bool {
	for _, n := range names {
		if os.Getenv(n) != "" {
			return true
		}
	}
	return false
}

func (v *validator) docker() {
	seen := map[string]bool{}
	for i, h := range v.a.Docker.Hosts {
		p := "docker.hosts[" + strconv.Itoa(i) + "]"
		switch {
		case h.Name == "":
			v.add(p+".name", "required")
		case !nameRE.MatchString(h.Name):
			v.add(p+".name", "%q must match [a-z0-9][a-z0-9-]{0,62}", h.Name)
		case seen[h.Name]:
			v.add(p+".name", "%q is listed twice", h.Name)
		}
		seen[h.Name] = true
		u, err := url.Parse(h.Endpoint)
		switch {
		case h.Endpoint == "":
			v.add(p+".endpoint", "required")
		case err != nil:
			v.add(p+".endpoint", "%q is not a URL", h.Endpoint)
		case u.Scheme == "unix":
			if u.Path == "" {
				v.add(p+".endpoint", "%q has no socket path (unix:///var/run/docker.sock)", h.Endpoint)
			}
		case u.Scheme == "tcp" || u.Scheme == "http" || u.Scheme == "https":
			if err := checkHostPort(u.Host); err != nil {
				v.add(p+".endpoint", "%q: %v", h.Endpoint, err)
			}
		default:
			v.add(p+".endpoint", "%q must be unix://PATH or tcp://HOST:PORT", h.Endpoint)
		}
		if !h.TLS.IsZero() {
			v.tlsFiles(p+".tls", h.TLS, false)
		}
		switch h.AddressMode {
		case "", "helper", "endpoint":
		default:
			v.add(p+".address_mode", "%q must be helper or endpoint", h.AddressMode)
		}
	}
	if img := v.a.Docker.HelperImage; img != "" && strings.ContainsAny(img, " \t\n") {
		v.add("docker.helper_image", "%q is not an image reference", img)
	}
}

// notify checks the notification sinks. Zero means the default unless it
// was written in the file (Load fills the defaults of absent keys).
func (v *validator) notify() {
	seen := map[string]bool{}
	for i, n := range v.a.Notify {
		p := "notify[" + strconv.Itoa(i) + "]"
		set := func(field string) bool { _, ok := v.a.lines[p+"."+field]; return ok }
		switch {
		case n.Name == "":
			v.add(p+".name", "required")
		case !fsm.SinkNameRE.MatchString(n.Name):
			v.add(p+".name", "%q must match [a-z0-9][a-z0-9-]{0,62}", n.Name)
		case seen[n.Name]:
			v.add(p+".name", "%q is listed twice", n.Name)
		}
		seen[n.Name] = true
		switch {
		case n.Exec == nil && n.Webhook == nil:
			v.add(p, "give exec or webhook")
		case n.Exec != nil && n.Webhook != nil:
			v.add(p+".webhook", "give exec or webhook, not both (one sink each)")
		}
		if x := n.Exec; x != nil {
			switch fi, err := os.Stat(x.Path); {
			case x.Path == "":
				v.add(p+".exec.path", "required")
			case err != nil:
				v.add(p+".exec.path", "%v", err)
			case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
				v.add(p+".exec.path", "%s is not an executable file", x.Path)
			}
			if d := x.Timeout; (d == 0 && set("exec.timeout")) || d < 0 || d > 10*time.Minute {
				v.add(p+".exec.timeout", "must be > 0 and at most 10m, got %s", d)
			}
		}
		if w := n.Webhook; w != nil {
			u, err := url.Parse(w.URL)
			switch {
			case w.URL == "":
				v.add(p+".webhook.url", "required")
			case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
				v.add(p+".webhook.url", "must be http(s)://HOST/PATH")
			case u.User != nil:
				v.add(p+".webhook.url", "must not carry credentials; the requests are signed with secret_file")
			}
			if w.SecretFile == "" {
				v.add(p+".webhook.secret_file", "required")
			} else if _, err := notify.ReadSecret(w.SecretFile); err != nil {
				v.add(p+".webhook.secret_file", "%v", err)
			}
			if d := w.Timeout; (d == 0 && set("webhook.timeout")) || d < 0 || d > time.Minute {
				v.add(p+".webhook.timeout", "must be > 0 and at most 1m, got %s", d)
			}
			if k := w.MaxAttempts; (k == 0 && set("webhook.max_attempts")) || k < 0 || k > 20 {
				v.add(p+".webhook.max_attempts", "must be 1-20, got %d", k)
			}
			if q := w.Queue; (q == 0 && set("webhook.queue")) || q < 0 || q > 100000 {
				v.add(p+".webhook.queue", "must be 1-100000, got %d", q)
			}
		}
	}
}
