// Package apparmor reads AppArmor denials from Linux audit logs: Parse
// turns one log line into a typed Record, Follow tails a log file the way
// `tail -F` does. `ars watch apparmor` joins them to the alert API.
//
// # Formats
//
// Both forms of an AppArmor audit record are read:
//
//	auditd (/var/log/audit/audit.log):
//	type=AVC msg=audit(1700000000.123:456): apparmor="DENIED" operation="exec" profile="/usr/sbin/named" name="/bin/sh" pid=1234 comm="named" requested_mask="x" denied_mask="x" fsuid=0 ouid=0
//
//	kernel ring buffer via syslog/journald (/var/log/kern.log, /var/log/syslog):
//	Nov 14 22:13:20 host kernel: [123.456] audit: type=1400 audit(1700000000.123:456): apparmor="DENIED" operation="exec" ...
//
// Also USER_AVC records whose msg='…' carries the AppArmor fields
// (userspace mediation such as D-Bus), auditd's "enriched" suffix (fields
// after a 0x1d separator) and a leading "node=HOST".
//
// The kernel writes an untrusted string (profile, name, comm, …) in double
// quotes unless it contains a space, a quote or a non-printable byte; then
// it writes the bytes hex-encoded without quotes. Parse decodes those.
//
// Only denials become Records: apparmor="DENIED", and "KILL" (a profile in
// kill mode killed the task). Other AppArmor records (ALLOWED from
// complain mode, AUDIT, STATUS, HINT, ERROR) are ErrNotDenial; lines that
// are not AppArmor audit records at all are ErrNotAppArmor. Anything else
// that goes wrong is ErrMalformed with the reason.
//
// # Identity
//
// Record.ID hashes the audit stamp (timestamp:serial, as written), the
// profile, the operation and the name. The kernel gives every audit event
// its own serial, so the id names the event: reading the same log again
// (after a restart, or the same event in both audit.log and kern.log)
// yields the same id, which the alert ledger records only once.
package apparmor

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors returned by Parse (wrapped; test with errors.Is).
var (
	// ErrNotAppArmor: the line is not an AppArmor audit record.
	ErrNotAppArmor = errors.New("not an AppArmor audit record")
	// ErrNotDenial: an AppArmor record that reports no denial (ALLOWED,
	// AUDIT, STATUS, HINT, ERROR …).
	ErrNotDenial = errors.New("not an AppArmor denial")
	// ErrMalformed: an AppArmor record that cannot be read.
	ErrMalformed = errors.New("malformed AppArmor record")
)

// Denial types (Record.Type).
const (
	TypeDenied = "DENIED"
	TypeKill   = "KILL"
)

// Record is one AppArmor denial.
type Record struct {
	// Time is the audit timestamp (UTC); Stamp the "SECONDS.FRACTION:SERIAL"
	// as written in the log, Serial its serial number.
	Time   time.Time
	Stamp  string
	Serial uint64
	// Type is TypeDenied or TypeKill.
	Type          string
	Operation     string // "exec", "open", "file_mmap", "capable", …
	Profile       string // the confining profile, e.g. "/usr/sbin/named"
	Name          string // the object: a path, a capability's target …; "" if none
	PID           int    // 0 if the record names none
	Comm          string // the task's command name
	RequestedMask string
	DeniedMask    string
	// Fields holds every key=value of the record, values unquoted and
	// hex-decoded.
	Fields map[string]string
	// Raw is the line as read.
	Raw string
}

// ID is the record's stable identity: "aa-" and the hex SHA-256 of the
// length-prefixed stamp, profile, operation and name (67 characters, a
// valid alert id).
func (r Record) ID() string {
	h := sha256.New()
	var n [8]byte
	for _, part := range []string{r.Stamp, r.Profile, r.Operation, r.Name} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	return "aa-" + hex.EncodeToString(h.Sum(nil))
}

// hexFields are the keys whose values the kernel writes as untrusted
// strings: quoted, or hex without quotes.
var hexFields = map[string]bool{
	"profile": true, "name": true, "name2": true, "comm": true, "exe": true,
	"target": true, "peer": true, "label": true, "peer_label": true,
	"namespace": true, "srcname": true, "fstype": true, "path": true, "cwd": true,
}

// Parse reads one log line. It returns a Record for an AppArmor denial,
// and otherwise an error wrapping ErrNotAppArmor, ErrNotDenial or
// ErrMalformed.
func Parse(line string) (Record, error) {
	raw := line
	line = strings.TrimRight(line, "\r\n")
	stamp, rest, found := findStamp(line)
	if !found {
		if strings.Contains(line, "apparmor=") {
			return Record{}, fmt.Errorf("%w: no audit(SECONDS.MS:SERIAL) stamp", ErrMalformed)
		}
		return Record{}, ErrNotAppArmor
	}
	secs, frac, serial, err := parseStamp(stamp)
	if err != nil {
		return Record{}, fmt.Errorf("%w: audit stamp %q: %v", ErrMalformed, stamp, err)
	}
	vals, err := parseFields(rest)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, ok := vals["apparmor"]; !ok {
		// USER_AVC: msg='apparmor="DENIED" operation=… '
		if msg, ok := vals["msg"]; ok && strings.Contains(msg.s, "apparmor=") {
			inner, err := parseFields(msg.s)
			if err != nil {
				return Record{}, fmt.Errorf("%w: msg: %v", ErrMalformed, err)
			}
			for k, v := range inner { // the inner fields describe the denial
				vals[k] = v
			}
		}
	}
	kind, ok := vals["apparmor"]
	if !ok {
		return Record{}, ErrNotAppArmor
	}
	if kind.s != TypeDenied && kind.s != TypeKill {
		return Record{}, fmt.Errorf("%w: apparmor=%q", ErrNotDenial, kind.s)
	}
	fields := make(map[string]string, len(vals))
	for k, v := range vals {
		if fields[k], err = decode(k, v); err != nil {
			return Record{}, fmt.Errorf("%w: %s: %v", ErrMalformed, k, err)
		}
	}
	r := Record{
		Time:          time.Unix(secs, frac).UTC(),
		Stamp:         stamp,
		Serial:        serial,
		Type:          kind.s,
		Operation:     fields["operation"],
		Profile:       cmp.Or(fields["profile"], fields["label"]), // D-Bus denials name it label
		Name:          fields["name"],
		Comm:          fields["comm"],
		RequestedMask: fields["requested_mask"],
		DeniedMask:    fields["denied_mask"],
		Fields:        fields,
		Raw:           raw,
	}
	switch {
	case r.Operation == "":
		return Record{}, fmt.Errorf("%w: no operation", ErrMalformed)
	case r.Profile == "":
		return Record{}, fmt.Errorf("%w: no profile", ErrMalformed)
	}
	if p, ok := fields["pid"]; ok {
		pid, err := strconv.Atoi(p)
		if err != nil || pid < 0 {
			return Record{}, fmt.Errorf("%w: pid %q is not a process id", ErrMalformed, p)
		}
		r.PID = pid
	}
	return r, nil
}

// findStamp finds "audit(STAMP):" and returns STAMP and what follows the
// colon.
func findStamp(line string) (stamp, rest string, ok bool) {
	for i := 0; ; {
		j := strings.Index(line[i:], "audit(")
		if j < 0 {
			return "", "", false
		}
		start := i + j + len("audit(")
		if start < len(line) && line[start] >= '0' && line[start] <= '9' {
			if end := strings.Index(line[start:], "):"); end > 0 {
				return line[start : start+end], line[start+end+2:], true
			}
		}
		i = start
	}
}

// parseStamp reads "SECONDS.FRACTION:SERIAL".
func parseStamp(s string) (secs, nanos int64, serial uint64, err error) {
	ts, ser, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, 0, errors.New("no serial")
	}
	whole, frac, ok := strings.Cut(ts, ".")
	if !ok || len(frac) == 0 || len(frac) > 9 {
		return 0, 0, 0, errors.New("want SECONDS.FRACTION")
	}
	if secs, err = strconv.ParseInt(whole, 10, 64); err != nil || secs < 0 || secs > 1<<40 {
		return 0, 0, 0, errors.New("bad seconds")
	}
	f, err := strconv.ParseUint(frac, 10, 32)
	if err != nil || frac[0] == '+' {
		return 0, 0, 0, errors.New("bad fraction")
	}
	nanos = int64(f)
	for range 9 - len(frac) {
		nanos *= 10
	}
	if serial, err = strconv.ParseUint(ser, 10, 64); err != nil {
		return 0, 0, 0, errors.New("bad serial")
	}
	return secs, nanos, serial, nil
}

// value is one field value as written.
type value struct {
	s      string
	quoted bool
}

// parseFields reads space-separated key=value pairs. Values are "quoted",
// 'quoted' or bare (up to the next space); words without '=' are skipped.
// 0x1d (auditd's separator before enriched fields) counts as a space. A
// repeated key keeps its first value.
func parseFields(s string) (map[string]value, error) {
	out := map[string]value{}
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == 0x1d }
	for i := 0; i < len(s); {
		if isSpace(s[i]) {
			i++
			continue
		}
		k := i
		for i < len(s) && !isSpace(s[i]) && s[i] != '=' {
			i++
		}
		if i >= len(s) || s[i] != '=' || i == k {
			for i < len(s) && !isSpace(s[i]) { // a word without a value
				i++
			}
			continue
		}
		key := s[k:i]
		i++ // '='
		var v value
		if i < len(s) && (s[i] == '"' || s[i] == '\'') {
			end := strings.IndexByte(s[i+1:], s[i])
			if end < 0 {
				return nil, fmt.Errorf("%s: unterminated quoted value", key)
			}
			v = value{s: s[i+1 : i+1+end], quoted: true}
			i += end + 2
		} else {
			start := i
			for i < len(s) && !isSpace(s[i]) {
				i++
			}
			v = value{s: s[start:i]}
		}
		if _, dup := out[key]; !dup {
			out[key] = v
		}
	}
	return out, nil
}

// decode returns a field's value. Untrusted-string fields (hexFields)
// written without quotes are hex-encoded, except "?" and "(null)".
func decode(key string, v value) (string, error) {
	if v.quoted || !hexFields[key] || v.s == "?" || v.s == "(null)" || v.s == "" {
		return v.s, nil
	}
	b, err := hex.DecodeString(v.s)
	if err != nil {
		return "", fmt.Errorf("unquoted value %q is not hex-encoded", truncate(v.s, 64))
	}
	return string(b), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
