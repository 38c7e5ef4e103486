package fsm

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (with fmt.Errorf("%w: ...")) and carries a message that names the
// service, replica or field concerned. Check them with errors.Is; map them to
// stable API codes with Code.
var (
	// ErrInvalid: a well-formed command or spec with a bad value.
	ErrInvalid = errors.New("invalid")
	// ErrUnknownService: the command names a service that does not exist.
	ErrUnknownService = errors.New("unknown service")
	// ErrUnknownReplica: the command names a replica the service does not have.
	ErrUnknownReplica = errors.New("unknown replica")
	// ErrStaleGeneration: the command expects a service generation other than
	// the current one (the decision was made on an outdated view).
	ErrStaleGeneration = errors.New("stale generation")
	// ErrStaleTerm: the command was issued by a leader of another term than
	// the one that appended the log entry.
	ErrStaleTerm = errors.New("stale term")
	// ErrUnknownCommand: the entry has a version or command type this binary
	// does not understand. Fatal for the node: see Fatal.
	ErrUnknownCommand = errors.New("unknown command")
	// ErrCorrupt: the entry or snapshot cannot be decoded (or a snapshot is
	// inconsistent). Fatal for the node when applying: see Fatal.
	ErrCorrupt = errors.New("corrupt")
	// ErrConflict: the command is well formed but contradicts the current
	// state (switching to a quarantined replica, removing the active one, ...).
	ErrConflict = errors.New("conflict")
	// ErrLedgerFull: the alert ledger holds AlertLedgerLimit alerts and none
	// of them has been decided yet, so a new alert would push out one that
	// must still be answered. Nothing was recorded; the sender retries.
	ErrLedgerFull = errors.New("alert ledger full")
	// ErrNeedsUpgrade: the entry has a format level (see Level) that some
	// voter does not read yet. Nothing was written; the caller tries again
	// once every node runs a version that reads it.
	ErrNeedsUpgrade = errors.New("needs upgrade")
)

// Stable error codes returned by Code.
const (
	CodeInvalid         = "invalid"
	CodeUnknownService  = "unknown_service"
	CodeUnknownReplica  = "unknown_replica"
	CodeStaleGeneration = "stale_generation"
	CodeStaleTerm       = "stale_term"
	CodeUnknownCommand  = "unknown_command"
	CodeCorrupt         = "corrupt"
	CodeConflict        = "conflict"
	CodeLedgerFull      = "ledger_full"
	CodeNeedsUpgrade    = "needs_upgrade"
)

// codes is ordered: the first sentinel an error wraps decides its code, so an
// error joining several sentinels still gets one deterministic code, with the
// fatal ones first.
var codes = []struct {
	err  error
	code string
}{
	{ErrCorrupt, CodeCorrupt},
	{ErrUnknownCommand, CodeUnknownCommand},
	{ErrStaleTerm, CodeStaleTerm},
	{ErrStaleGeneration, CodeStaleGeneration},
	{ErrUnknownService, CodeUnknownService},
	{ErrUnknownReplica, CodeUnknownReplica},
	{ErrConflict, CodeConflict},
	{ErrLedgerFull, CodeLedgerFull},
	{ErrNeedsUpgrade, CodeNeedsUpgrade},
	{ErrInvalid, CodeInvalid},
}

// Code returns the stable API code of err ("invalid", "unknown_service",
// "unknown_replica", "stale_generation", "stale_term", "unknown_command",
// "corrupt", "conflict", "ledger_full", "needs_upgrade"), or "" if err is
// nil or wraps none of this package's sentinels.
func Code(err error) string {
	if err == nil {
		return ""
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return ""
}

// FromCode returns the sentinel error for an API code produced by Code, or nil
// for an unknown or empty code. It lets a client turn a wire error back into
// something errors.Is understands.
func FromCode(code string) error {
	for _, c := range codes {
		if c.code == code {
			return c.err
		}
	}
	return nil
}

// Fatal reports whether err means the log entry could not be understood
// (ErrCorrupt or ErrUnknownCommand). The caller must stop applying entries
// (halt the node) instead of skipping the entry: skipping would let this node's
// state diverge from the others'.
func Fatal(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnknownCommand)
}
