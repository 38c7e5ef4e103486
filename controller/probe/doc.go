// Package probe probes a DNS service and decides whether it is down: one
// probe (Query), the verdict over a stream of probe results (Verdict, a pure
// state machine), and the schedule that runs probes against one service
// address and keeps its verdict (Prober). It is leader-only work: the
// controller runs a Prober per service inside its leadership context.
//
// # One probe
//
// Query sends the spec's question (RD set, EDNS0 with a 1232-byte payload)
// over a fresh UDP socket, and over a fresh TCP connection if the UDP answer
// is truncated, all within spec.Timeout and the caller's context. The answer
// must match the query's ID and question (name case-insensitively, type,
// class), have rcode NOERROR and, when spec.Expect is set, hold a record of
// the asked type with the expected rdata (A/AAAA: the address; other types:
// the rdata parsed for that type, names case-insensitive; text that does not
// parse for the type is compared as whitespace-normalised text). Records are
// matched by type, not owner name, so an answer through a CNAME chain counts.
// Without Expect a NOERROR answer with no records (NODATA) is valid: the
// server answered.
//
// A failure has one Reason and an Err wrapping that Reason's sentinel
// (ErrTimeout, ErrNetwork, ErrTruncated, ErrRcode, ErrQuestion, ErrID,
// ErrMalformed, ErrUnexpected, ErrMissing, ErrCanceled, ErrInvalidSpec).
// Over UDP, a reply with a wrong ID, a wrong question or that does not parse
// does not end the probe: it listens on until its deadline, so a spoofed
// packet cannot mask the real answer, and reports that reply's Reason rather
// than ReasonTimeout if no valid answer came. Over TCP (one query on its own
// connection) such a reply ends the probe. A refused UDP port (ICMP) ends
// it at once as ReasonNetwork.
//
// # The verdict
//
// Verdict is fed results in completion order and the time; it holds no clock
// and starts no goroutine. It answers "is the service down, since when (the
// start of the first failed probe of the outage) and how long did detection
// take (from then to the verdict)".
//
//   - paper (the research system): DOWN after spec.Failures (3) consecutive
//     failed probes; each probe has a 500 ms timeout and runs alone. Any
//     failure counts, not only timeouts (a server answering SERVFAIL is not
//     serving). Detection by timeouts is 3 × 500 ms.
//   - ars (default): DOWN when no valid answer has arrived for more than
//     spec.Window (275 ms) since the latest valid answer (or since the start)
//     and at least spec.Failures consecutive failures were seen since it.
//     Probes start every spec.Interval (50 ms) with spec.Timeout (100 ms), so
//     they overlap. The failure count keeps a short stall from looking like an
//     outage: a stalled server's held queries are answered when it resumes.
//
// In both, any valid answer makes the verdict UP again (the transition records
// how long the outage lasted); a failure counts only if its probe started
// after the probe of the latest valid answer; cancelled probes are ignored.
// The window is strict (silence of exactly the window is not DOWN), so exact
// ties on the probe grid go to UP.
//
// # Timing of the ars defaults
//
// Proven on a discrete-event simulation (sim_test.go: every phase of the probe
// grid in 250 µs steps, RTT 50 µs–10 ms, constant or jittering by ±RTT):
//
//   - a server that stops answering is DOWN within 300 ms of stopping (worst
//     simulated 276 ms; the verdict comes at most window + RTT after the last
//     answer, which preceded the stop);
//   - a 200 ms stall whose held queries are then answered, and a 200 ms gap
//     in which queries are lost, are never DOWN, with RTT jitter.
//
// Why 275 ms and not 250: after a 200 ms loss the gap between valid answers
// is exactly 250 ms (5 × 50 ms on the probe grid), so with a 250 ms window RTT
// jitter decides, and the simulation gave a false DOWN at most phases.
//
// # The schedule
//
// Prober runs one service's probes until its context ends, then cancels the
// probes in flight and waits for them. ars: a probe per Interval on a fixed
// grid, each in its own goroutine, at most ceil(Timeout/Interval)+1 in flight
// (a slot that finds the limit reached is skipped and counted). paper: one
// probe at a time, the next one when the previous finished and no sooner than
// Interval (PaperMinSpacing, 10 ms, when 0) after its start, so that a server
// that fails at once is not probed in a busy loop. Results and transitions go
// to callbacks from the Prober's goroutine; a probe's Start is stamped with
// the Prober's Clock, which tests replace with a manual one. Metrics (latency
// histogram, results by reason, verdicts, detection time, state, in flight,
// skipped) are a prometheus.Collector the caller registers.
//
// Not here yet: confirmation of a DOWN verdict by probes from followers
// (spec.Confirm "quorum"); the Prober reports, the controller decides.
package probe
