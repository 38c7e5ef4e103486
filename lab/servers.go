package lab

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"text/template"
)

// The test zone every replica serves (notes: lab.internal is special-cased
// by none of the four resolvers).
const (
	ZoneName   = "lab.internal."
	RecordName = "www.lab.internal."
	RecordA    = "192.0.2.10"
)

// Implementations the lab can run as replica processes, with the program
// each needs (from the distribution's packages; dnsd is the project's own
// test responder, for machines without them).
var Implementations = map[string]string{
	"bind9":         "named",
	"unbound":       "unbound",
	"knot-resolver": "kresd",
	"pdns-recursor": "pdns_recursor",
	"dnsd":          "dnsd",
}

// ImplNames lists Implementations' keys, sorted.
func ImplNames() []string {
	var out []string
	for k := range Implementations {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ServerSpec is one replica's DNS server: which implementation, where its
// files go, the address it serves on, and the lab subnet it answers.
type ServerSpec struct {
	Impl   string
	Dir    string     // the replica's own folder: config, zone, pid, cache
	Addr   netip.Addr // the service address (every replica has the same)
	Subnet netip.Prefix
	// Binary overrides the program's path (default: found in PATH; for
	// dnsd, required unless in PATH).
	Binary string
}

// Prepare writes the server's configuration into spec.Dir and returns the
// command that runs it in the foreground, listening on spec.Addr:53 only.
// The settings are the ones verified on Debian 12 (BIND 9.18, Unbound
// 1.17, Knot Resolver 5.6, PowerDNS Recursor 4.8): no daemonizing, no
// syslog, no default paths, nothing that reaches out to the internet.
func Prepare(spec ServerSpec) ([]string, error) {
	prog, ok := Implementations[spec.Impl]
	if !ok {
		return nil, fmt.Errorf("lab: unknown implementation %q (known: %v)", spec.Impl, ImplNames())
	}
	if !spec.Addr.Is4() || !spec.Subnet.IsValid() {
		return nil, fmt.Errorf("lab: %s: need an IPv4 service address and a subnet", spec.Impl)
	}
	bin := spec.Binary
	if bin == "" {
		var err error
		if bin, err = exec.LookPath(prog); err != nil {
			return nil, fmt.Errorf("lab: %s needs %s (apt-get install %s): %w", spec.Impl, prog, debPackage(spec.Impl), err)
		}
	}
	if spec.Impl == "pdns-recursor" {
		// It binds a control socket in its socket-dir and exits if the
		// path does not fit a Unix socket address: the replica would run
		// with no server and never answer.
		if sock := filepath.Join(spec.Dir, "pdns_recursor.controlsocket"); len(sock) > maxUnixPath {
			return nil, fmt.Errorf("lab: pdns-recursor's control socket %s is %d bytes, more than a Unix socket path holds (%d): give the lab a shorter state directory", sock, len(sock), maxUnixPath)
		}
	}
	if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	data := map[string]string{
		"Dir": spec.Dir, "Addr": spec.Addr.String(), "Subnet": spec.Subnet.Masked().String(),
		"Zone": ZoneName, "Name": RecordName, "A": RecordA, "ZoneFile": filepath.Join(spec.Dir, "lab.internal.zone"),
	}
	write := func(name, tmpl string) (string, error) {
		var b bytes.Buffer
		if err := template.Must(template.New(name).Parse(tmpl)).Execute(&b, data); err != nil {
			return "", err
		}
		p := filepath.Join(spec.Dir, name)
		return p, os.WriteFile(p, b.Bytes(), 0o644)
	}
	switch spec.Impl {
	case "bind9":
		if _, err := write("lab.internal.zone", zoneFile); err != nil {
			return nil, err
		}
		conf, err := write("named.conf", namedConf)
		if err != nil {
			return nil, err
		}
		return []string{bin, "-g", "-u", "root", "-c", conf}, nil
	case "unbound":
		conf, err := write("unbound.conf", unboundConf)
		if err != nil {
			return nil, err
		}
		return []string{bin, "-d", "-c", conf}, nil
	case "knot-resolver":
		conf, err := write("kresd.conf", kresdConf)
		if err != nil {
			return nil, err
		}
		return []string{bin, "-n", "-q", "-c", conf, spec.Dir}, nil
	case "pdns-recursor":
		if _, err := write("lab.internal.zone", zoneFile); err != nil {
			return nil, err
		}
		if _, err := write("recursor.conf", recursorConf); err != nil {
			return nil, err
		}
		return []string{bin, "--config-dir=" + spec.Dir}, nil
	default: // dnsd
		return []string{bin, "-listen", data["Addr"] + ":53", "-name", RecordName, "-a", RecordA}, nil
	}
}

// maxUnixPath is the longest path a Unix socket address holds on Linux
// (sun_path is 108 bytes with the terminating NUL).
const maxUnixPath = 107

func debPackage(impl string) string {
	switch impl {
	case "dnsd":
		return "(none: build ./test/dnsd)"
	case "bind9":
		return "bind9"
	}
	return impl
}

const zoneFile = `$TTL 60
@	IN SOA	ns.lab.internal. hostmaster.lab.internal. ( 1 3600 600 86400 60 )
@	IN NS	ns.lab.internal.
ns	IN A	192.0.2.53
www	IN A	{{.A}}
`

const namedConf = `// ars lab replica: authoritative for lab.internal only.
options {
	directory "{{.Dir}}";
	pid-file "{{.Dir}}/named.pid";
	session-keyfile "{{.Dir}}/session.key";
	listen-on { {{.Addr}}; };
	listen-on-v6 { none; };
	recursion no;
	allow-query { {{.Subnet}}; 127.0.0.0/8; };
	dnssec-validation no;
};
zone "lab.internal" {
	type primary;
	file "{{.ZoneFile}}";
};
`

const unboundConf = `# ars lab replica: lab.internal from local data.
server:
	interface: {{.Addr}}
	do-ip6: no
	access-control: {{.Subnet}} allow
	access-control: 127.0.0.0/8 allow
	username: ""
	chroot: ""
	directory: "{{.Dir}}"
	pidfile: "{{.Dir}}/unbound.pid"
	do-daemonize: no
	use-syslog: no
	logfile: ""
	local-zone: "lab.internal." static
	local-data: "lab.internal. 60 IN SOA ns.lab.internal. hostmaster.lab.internal. 1 3600 600 86400 60"
	local-data: "{{.Name}} 60 IN A {{.A}}"
remote-control:
	control-enable: no
`

const kresdConf = `-- ars lab replica: www.lab.internal from hints.
net.ipv6 = false
net.listen('{{.Addr}}', 53, { kind = 'dns' })
modules.load('hints > iterate')
hints['www.lab.internal'] = '{{.A}}'
cache.size = 10 * MB
`

const recursorConf = `# ars lab replica: lab.internal from a local zone file.
local-address={{.Addr}}
allow-from={{.Subnet}},127.0.0.0/8
auth-zones=lab.internal={{.ZoneFile}}
security-poll-suffix=
socket-dir={{.Dir}}
daemon=no
write-pid=no
disable-syslog=yes
`
