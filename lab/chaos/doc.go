// Package chaos is the pure part of the chaos suite (`ars-lab chaos`,
// `make chaos`): seeded random fault schedules (Generate), the history a
// run of one schedule records (History), and the checker that verifies
// docs/design.md §4 over a history (Check), with a summary over many runs
// (Summary). It does no I/O, reads no clock and starts no goroutine: the
// runner (lab.RunSchedule) executes a schedule on a lab and fills the
// history; the same seed always gives the same schedule. Decisions and
// bounds: lab/DESIGN.md, "Chaos".
package chaos
