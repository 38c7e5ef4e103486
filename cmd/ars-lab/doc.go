// Command ars-lab is the ars lab, benchmark and chaos tooling, apart from
// the product (ars): `ars-lab up` builds a lab on one Linux machine (root)
// — govmomi's vCenter simulator, real DNS servers in network namespaces,
// ars agent processes — and the other commands attack it (attack
// dos|exploit), fault its nodes (node kill|start|stop|cont|partition|heal,
// engine restart), run commands in it (exec), show it (status) and tear
// it down (down). `ars-lab bench` measures downtime per attack, `ars-lab
// chaos` runs seeded fault schedules and checks the invariants. `ars-lab
// serve`, the daemon up starts, is hidden from help.
//
// The lab runs the ars binary as processes (each node's `ars agent`, each
// replica's `ars watch apparmor`, the ars of `ars-lab exec -- ars …`): by
// default the ars next to ars-lab's own executable, else the one -ars or
// $ARS_BIN names.
//
// The command framework (registry, flags, exit codes) is shared with ars
// in cmd/internal/cli. Exit codes: 0 success; 1 the operation failed; 2
// usage error (including a request the lab refused as malformed); 3 no
// lab is running. Every failure prints one line "ars-lab: <reason>".
package main
