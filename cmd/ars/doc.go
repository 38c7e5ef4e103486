// Command ars is the ars controller: `ars agent` runs a node, every other
// command is the admin CLI that talks to any node's HTTPS API (plus the
// local keygen, watch apparmor and version). The lab, benchmark and chaos
// tooling is the separate command ars-lab.
//
// The command framework (registry, global flags, exit codes) is shared
// with ars-lab in cmd/internal/cli, whose doc lists the global flags and
// exit codes. Every command registers itself from its own file (cmd_*.go)
// with app.Register, under one of the help groups declared in main.go.
//
// Exit codes: 0 success; 1 the operation failed; 2 usage error; 3 the node
// could not be reached, or TLS failed. Every failure prints exactly one
// line "ars: <reason>" on stderr.
package main
