// Package apiserver is the HTTPS API of an ars node: routes and their
// roles, token and node-certificate authentication, forwarding of
// leader-only requests from followers to the leader, the alert routes and
// their flood bound, operator actions, /metrics and the status page. It
// declares what it needs from the node as the Backend interface, in the
// node's own types (package cluster), and turns them into the wire types
// of package api; the client and the wire types live in api, so a detector
// or a script imports api alone. The cluster's certificates and tokens are
// made by package pki, the node TLS identity is package transport's.
//
// # Identity and authentication
//
// The cluster has its own CA (pki.GeneratePKI, `ars keygen`). A certificate
// issued by it is a node certificate when it carries the node marker: a URI
// SAN "ars://node/<name>" (authoritative) or Subject OU "ars-node" with the
// node name as CN; pki.GeneratePKI writes both. transport.NodeName extracts the name from
// a verified peer certificate only.
// A replica certificate (the replica marker, "ars://replica/<name>" or OU
// "ars-replica", written by pki.IssueReplicaCert) is never a caller: the
// listener's configuration (transport.ServerTLS) fails its handshake,
// whatever token comes with it.
//
// API callers authenticate with a token ("Authorization: Bearer <secret>"
// or "X-Ars-Token: <secret>"; browsers may use HTTP Basic with the secret
// as password, on GET only, so cross-site form posts cannot ride on cached
// credentials). Tokens come from tokens.yaml (pki.LoadTokens) and have a role:
// operator (everything public), reader (read-only routes), detector (only
// routes that list it — alert submission). Only SHA-256 digests of secrets
// are kept; Lookup compares in constant time against every entry. A
// request without a token but with a verified node certificate is the
// internal role "node", which may only call /v1/internal/*. A token always
// wins over a node certificate, so a forwarded request is judged by the
// original caller's token on the leader, not by the forwarding node's
// certificate. Secrets are never logged; the access log names the token.
//
// Dev mode (ServerConfig.Dev) turns authentication and authorization off:
// every request is an operator and every route is open. A warning is
// logged at start.
//
// # Routes
//
// Each route lists the roles allowed to call it (reader implies operator)
// and whether it is leader-only. See Server.routeTable:
//
//	GET  /v1/status, /v1/members, /v1/raft/peers      reader
//	POST /v1/join, /v1/leave                          operator (local)
//	POST /v1/raft/transfer-leader, /v1/raft/remove-peer operator, leader
//	POST /v1/services                                 operator, leader
//	GET  /v1/services, /v1/services/{name}            reader (leader with ?consistent)
//	GET|POST /v1/snapshot                             operator, leader
//	POST /v1/alerts, /v1/alerts/webhook               detector and operator, leader
//	GET  /v1/alerts                                   reader (leader with ?consistent)
//	POST /v1/services/{name}/switch                   operator, leader
//	POST /v1/services/{name}/replicas/{replica}/{action} operator, leader
//	GET  /v1/history                                  reader (leader with ?consistent)
//	POST /v1/internal/apply                           node, leader
//	GET  /metrics, /                                  reader
//
// Request bodies are decoded strictly (unknown fields, trailing data and
// wrong types are 400 "invalid"; nothing reaches the backend), limited to
// 1 MiB (snapshots 64 MiB, alerts 64 KiB, webhook alerts 16 KiB; over the
// limit, or a Content-Length over it, is 413 "too_large"). Raw
// commands on /v1/internal/apply are decoded with fsm.Decode before they
// are applied, so a corrupt entry never reaches the Raft log.
//
// # Alerts
//
// POST /v1/alerts takes {"id","service","replica","kind","source",
// "evidence"} (AlertRequest; kind "exploit" or "dos"; id 1..128 of
// [A-Za-z0-9._:-] starting with a letter or digit; source defaults to the
// caller's token name; evidence up to 16 KiB of text, tab and line breaks
// allowed). The leader checks it, refuses unknown services and replicas
// (404 unknown_service / unknown_replica) before anything reaches the log,
// stamps fsm.Alert.At with its own clock (ServerConfig.Now), encodes the
// command with its term and applies it. It answers only after the commit:
// 201 with AlertResponse for a new alert, 200 with "duplicate": true when
// the ledger already holds the id (the fsm dedups; the entry changes
// nothing). A detector therefore retries with the same id until it gets
// an answer. Any error commits nothing.
//
// POST /v1/alerts/webhook?service=S&replica=R&kind=K[&source=NAME] is the
// same for detectors that cannot shape JSON (SecondDEP, an EDR): the body
// (up to 16 KiB) is the evidence — as text if it is valid UTF-8 without
// control characters other than tab and line breaks, otherwise "base64:"
// and its base64 — and the id comes from the X-Ars-Alert-Id header or,
// without one, is WebhookAlertID(source, service, replica, body), so a
// redelivered webhook dedups. Unknown or repeated query parameters are 400.
//
// Both routes are rate-limited per caller (token) on the leader: a bucket
// of AlertBurst (default 200) refilled at AlertRate per second (default
// 20). Over it the answer is 429 rate_limited with Retry-After, before the
// body is read, and nothing is committed. A request without a valid token
// is 401 before it reaches the bucket; a reader's is 403.
//
// # Alert floods: the bound
//
// Whatever a caller sends, and however fast:
//
//   - Per caller, at most AlertBurst + AlertRate × t alerts are
//     acknowledged or committed in t seconds: 200 + 20 t with the
//     defaults. Duplicates count too. The buckets live on the node that
//     leads, so each change of leader can let one more burst through:
//     over T leader terms, T × 200 + 20 t. With k tokens that may post alerts (detectors and
//     operators; tokens.yaml fixes k) the cluster-wide bound is k times
//     that.
//   - Dedup: an id already in the ledger is answered 200 "duplicate" and
//     decided on once: thousands of copies of one alert are one ledger
//     record and at most one switch.
//   - Log entries: each acknowledged alert is one entry; each new alert
//     adds its decision (one entry, up to three when the decision is
//     overtaken by another commit and taken again); each switch or
//     quarantine adds its SwitchDone and up to three "restored" attempts.
//     So the log grows by at most accepted + 3 × new + 4 × (switches +
//     quarantines) entries, plus a few per election.
//   - Switches: a DoS alert or verdict on the active replica is flap-damped
//     by the service's policy — at most policy.max_switches switches (of
//     any reason) start within policy.window, none before the active was
//     active for policy.min_dwell; damped alerts wait in the ledger and are
//     decided again when damping allows. Exploit alerts are never damped
//     (controller/DESIGN.md): each switches away from the replica it names only if
//     that replica is active, and the replica then serves again only after
//     it was restored, so exploit switches are at most the distinct exploit
//     alerts on the active, and in a flood at most one per restore.
//   - Alerts on replicas that are not active decide nothing but an outcome
//     (or a quarantine of a standby or suspended replica).
//
// TestAlertFloodFromSeveralCallersIsBounded checks the per-caller bound at
// thousands of requests per second through the handler;
// TestAlertFloodIsBounded (test/e2e) floods a three-node cluster driving a
// vCenter simulator from three callers and checks the acknowledged alerts,
// the ledger, the switches and the log growth against it, and that every
// node keeps answering reads.
//
// The ledger holds at most fsm.AlertLedgerLimit (4096) alerts. To take a
// new one, a full ledger drops its oldest decided alert (whose id is then
// new again); it never drops an undecided one (docs/design.md §4.3: a committed
// alert is never lost). When all 4096 are undecided (damped alerts under a
// flood from many tokens) a new alert is answered 503 ledger_full with
// Retry-After: 1 and nothing is recorded; detectors retry it like any 503
// (TestFullLedgerRefusesNewAlerts). Duplicates of held alerts are still
// acknowledged.
//
// The ledger keeps LedgerEvidenceBytes (4 KiB, the fsm's limit) of the
// evidence; longer evidence is cut and ends in
// "[truncated: N bytes, sha256 HEX]" (AlertResponse.EvidenceTruncated).
//
// GET /v1/alerts[?service=S][&limit=N] lists the node's ledger newest
// first (limit 1..4096, default 100). The backend provides it through
// AlertLedger, or else through State() (the fsm snapshot bytes), which is
// what cluster.Cluster offers today.
//
// # Operator actions and history
//
// POST /v1/services/{name}/switch takes an optional {"to","reason"} (reason
// at most 256 bytes of one printable line; body at most 4 KiB). The leader
// runs decide.Decide with a ManualSwitch on its copy of the service and
// commits the single fsm.Switch it returns; it answers 200
// {"service","from","to","generation","index","outcome","reason"}. A
// refusal (already active, quarantined, in maintenance, nothing eligible)
// is 409 conflict with decide's reason; an unknown service or replica 404;
// bad input 400. Nothing is committed in those cases.
//
// POST /v1/services/{name}/replicas/{replica}/{action}, action quarantine,
// restore, maintenance or release, takes an optional {"reason"} and commits
// an fsm.ReplicaRole with ExpectGeneration set to the current generation.
// "restore" is the fsm action "restored": it marks the replica clean, i.e.
// the operator asserts the replica was restored out of band. It answers 200
// {"service","replica","action","result"}; the fsm's refusals are 409.
//
// GET /v1/history[?service=S] returns {"switches": the switch records,
// per service in name order, newest last; "aggregates": per reason and
// platform pair ("vm-container": from-platform, to-platform) the count,
// mean and max of switch_ms and total_ms over the done records}.
//
// # Forwarding
//
// A leader-only request that reaches a follower is checked locally (401,
// 403 and 413 happen there), then reverse-proxied to the leader's API over
// the node's client TLS (the leader must present a node certificate), with
// the caller's Authorization header and "X-Ars-Forwarded: <this node>".
// The leader checks the token again. A request that already carries
// X-Ars-Forwarded and lands on a non-leader is answered 503 not_leader:
// there is never a second hop. While no leader is known the follower polls
// Backend.LeaderAPI for up to ServerConfig.LeaderWait (2 s) and then
// answers 503 no_leader; a leader that cannot be reached is also
// no_leader. Both codes mean "retry shortly".
//
// # Errors
//
// Errors travel as {"error":{"code":"…","message":"…"}}. ToAPIError maps
// this package's sentinels, raft's leadership/timeout/shutdown errors and
// fsm's errors (by fsm.Code) to a status and code; the client rebuilds an
// *APIError whose Is method matches the same sentinels, so
// errors.Is(err, ErrNotLeader) and errors.Is(err, fsm.ErrUnknownService)
// work on both sides. Failures to reach a node at all are *NetworkError
// (the CLI's "cannot reach node").
//
//	400 invalid, bad_request, unknown_command   401 unauthorized
//	403 forbidden                               404 not_found, unknown_service, unknown_replica
//	405 method_not_allowed                      409 conflict, stale_generation, stale_term
//	413 too_large                               500 internal, corrupt
//	503 not_leader, no_leader, unavailable      504 timeout
//
// # Raft stream layer
//
// StreamLayer runs Raft over mutual TLS (TLS 1.2+). Both ends must present
// a node certificate from the cluster CA; the dialling side also checks
// the peer's SANs against the dialled address, so node certificates must
// carry the nodes' advertise IPs (GeneratePKI takes them per node).
// Handshakes happen off the accept path with a deadline, so a silent or
// misbehaving peer neither blocks Accept nor kills the listener.
//
// # Snapshots
//
// GET /v1/snapshot streams the snapshot and sends its SHA-256 as the HTTP
// trailer X-Ars-Snapshot-Sha256, which Client.SnapshotSave verifies. If
// the backend fails mid-stream the response is aborted, so a truncated
// snapshot is never mistaken for a complete one.
package apiserver
