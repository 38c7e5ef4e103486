// Package bench turns the per-trial measurements of the attack-resilience
// benchmark into its result files. It is pure: the runner collects a []Trial
// per scenario × mode × profile, Summarize aggregates them into a Result, and
// Write stores a File of results as
//
//   - latest.json, the machine-readable results,
//   - latest.png, a chart of the downtimes (bar = max, marker = mean, one
//     colour per mode, one panel per profile), and
//   - latest.md, a Markdown table per profile.
//
// # Scenarios, modes, profiles
//
// Scenario names are dos/PAIR and exploit/PAIR for PAIR in vm-vm,
// vm-container and container-container, leader-loss/dos, and
// impl-attack/POLICY for POLICY in diverse, round-robin and first-available
// (dnsdist's), and repeated-dos (see Scenarios; SummarizeRepeated and
// RelateDoS for the last).
// Modes are ars, ars-address (ars with address handover on its Linux
// replicas, VMs and containers), paper-sdk, paper-cli and dnsdist (see Modes), always
// reported in that order. Profiles name the injected latency: "none", or a
// calibrated profile such as "paper".
//
// # Schema of latest.json
//
//	{"machine": "...", "started": "RFC 3339", "go": "...", "command": "...",
//	 "scenarios": [{"name": "dos/vm-vm", "mode": "ars", "profile": "none", "trials": 10,
//	   "downtime_ms": {"mean": 0, "p50": 0, "max": 0},
//	   "detection_ms": {"mean": 0, "max": 0}, "switch_ms": {"mean": 0, "max": 0},
//	   "lost_queries": {"mean": 0, "max": 0}, "false_switches": 0,
//	   "outages": {"mean": 0, "max": 0}, "switched": 0, "errors": ["trial 3: ..."],
//	   "exposure_ms": {"mean": 0, "max": 0}, "exposure_trials": 10,
//	   "note": "..."}]}
//
// A repeated-dos result adds
//
//	"repeated": {"due": 12, "attacks": 6, "switched": 5, "not_switched_clean": 1,
//	  "outage_ms": {"mean": 0, "max": 0}, "vs_dos_max": 1.2,
//	  "per_attack": [{"trial": 1, "target": "bind9-win", "at_ms": 0, "to": "bind9-lin",
//	    "after_ms": 270, "in_time": true, "outage_ms": 300, "lost_queries": 60,
//	    "clean": ["bind9-lin"]}]}
//
// ("vs_dos_max" only when dos/vm-vm ran in the same run).
//
// "exposure_ms" is over the "exposure_trials" successful trials whose
// switch record measured how long the replica switched away from stayed
// on the service address after the trigger (until its agent released the
// address or its NIC detach returned); both are absent when no trial
// measured it.
//
// The four metadata fields, "outages", "switched", "errors", "note",
// "exposure_ms" and "repeated" are optional and omitted when empty. A note says what a
// result measured where that is not what its scenario name says of the
// other modes (a system that cannot switch, a rotation of its own, the
// policy repeated-dos ran with); the table marks its row "(note N)" and
// prints it underneath. Results are sorted by profile, scenario name and
// mode. Durations are milliseconds rounded to 0.1 ms; p50 is the median with
// linear interpolation (the mean of the two middle trials for an even count).
// "trials" counts the trials that succeeded; failed ones are listed in
// "errors" and left out of the numbers.
//
// A scenario that could not run (for example a container pair on a host
// without container replicas) is never estimated: it is reported as
//
//	{"name": "dos/vm-container", "mode": "ars", "profile": "none", "trials": 0,
//	 "status": "not-run", "reason": "no container replicas"}
//
// with no measurement fields, left out of the chart and shown as
// "not run: REASON" in the table.
//
// # The scale benchmark
//
// scale.go holds the pure parts of `ars-lab scale`: the plan of the lab
// of each N (ScaleServices: N services of four diverse replicas, their
// addresses in ScaleSubnet), the sample and the concurrent share of the
// services it attacks, Quantiles, scale.json (ScaleFile, one ScaleRun
// per N) and scale.png (ScaleChart: CPU, memory and times against N). A
// figure not measured is absent from the file and the chart and "-" in
// ScaleTable, never 0.
package bench
