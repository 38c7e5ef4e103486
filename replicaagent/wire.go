package replicaagent

import (
	"errors"
	"fmt"
)

// Routes of the agent's API.
const (
	PathClaim   = "/v1/claim"
	PathRelease = "/v1/release"
	PathState   = "/v1/state"
)

// MaxBodyBytes bounds a command's body.
const MaxBodyBytes = 4 << 10

// Fence orders the commands of successive leaders and switches: the
// leader's Raft term first, then the service's switch generation.
type Fence struct {
	Term       uint64 `json:"term"`
	Generation uint64 `json:"generation"`
}

// Compare is -1, 0 or +1 as f is older than, the same as, or newer than o.
func (f Fence) Compare(o Fence) int {
	switch {
	case f.Term != o.Term:
		return cmpU(f.Term, o.Term)
	default:
		return cmpU(f.Generation, o.Generation)
	}
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (f Fence) String() string { return fmt.Sprintf("(term %d, generation %d)", f.Term, f.Generation) }

// Action is what a command asks for.
type Action string

// Actions.
const (
	ActionClaim   Action = "claim"
	ActionRelease Action = "release"
)

// Command is the body of a claim or a release: the replica and address it
// is meant for (both must be the agent's own), and its fence.
type Command struct {
	Replica string `json:"replica"`
	Address string `json:"address"`
	Fence
}

// Result answers a command that took effect or was a repeat.
type Result struct {
	Replica string `json:"replica"`
	Address string `json:"address"`
	Action  Action `json:"action"`
	// Held: the address is on the service link now.
	Held bool `json:"held"`
	// Changed: this command added or removed the address; false for a
	// repeat, or a link that was already so.
	Changed bool `json:"changed"`
	// Fence is the highest fence the agent has seen (this command's).
	Fence Fence `json:"fence"`
	// TookMicros is how long the agent took from reading the command to
	// answering (the first announcement included, for a claim).
	TookMicros int64 `json:"took_us"`
}

// State is what the agent holds and the last command it obeyed.
type State struct {
	Replica   string `json:"replica"`
	Interface string `json:"interface"`
	Address   string `json:"address"`
	Held      bool   `json:"held"`
	// LinkUp: the service link carries traffic (its NIC is connected).
	LinkUp bool `json:"link_up"`
	// Fence and LastAction are the highest fence seen and the action
	// taken under it; absent before the first command.
	Fence      *Fence `json:"fence,omitempty"`
	LastAction Action `json:"last_action,omitempty"`
}

// Error codes of the agent's API.
const (
	CodeBadRequest    = "bad_request"    // 400: malformed body, wrong replica or address, term 0
	CodeStaleFence    = "stale_fence"    // 409: the command is older than the highest fence seen
	CodeFenceConflict = "fence_conflict" // 409: the same fence already carried the other action
	CodeTooLarge      = "too_large"      // 413
	CodeForbidden     = "forbidden"      // 403: the caller is not a controller node
	CodeFailed        = "failed"         // 500: the kernel refused, or the state file could not be written
	CodeNoCarrier     = "no_carrier"     // 503: a claim on a service link without carrier (its NIC is disconnected); nothing changed
	CodeNotFound      = "not_found"      // 404
	CodeMethod        = "method_not_allowed"
)

// Error is an agent's refusal, as the client returns it.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("replica agent: %s (%s, HTTP %d)", e.Message, e.Code, e.Status)
}

// ErrStale matches an *Error whose code is stale_fence or fence_conflict:
// a newer leader or switch has spoken to the agent.
var ErrStale = errors.New("stale fence")

// Is makes errors.Is(err, ErrStale) true for fence refusals.
func (e *Error) Is(target error) bool {
	return target == ErrStale && (e.Code == CodeStaleFence || e.Code == CodeFenceConflict)
}

type errorBody struct {
	Error *Error `json:"error"`
}
