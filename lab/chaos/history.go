package chaos

import (
	"time"

	"github.com/ars-project/ars/fsm"
)

// History is what one run of a schedule recorded: the faults and attacks
// as carried out, the lab's data-path events, the client's gaps, periodic
// samples of every node's status (with its state digest) and of the
// vCenter's sessions, and at the end the service's switches and the
// alert ledger as the leader holds them.
type History struct {
	Seed     int64     `json:"seed"`
	Schedule Schedule  `json:"schedule"`
	Start    time.Time `json:"start"`
	// End is when the run stopped recording (after Heal and the
	// readiness check).
	End time.Time `json:"end"`
	// Healed is when every fault had been undone.
	Healed time.Time `json:"healed"`
	// Linked lists the replicas linked to the service network at Start
	// (Events says what changed after).
	Linked []string `json:"linked"`
	// Address lists the replicas that take the service address through
	// their replica agent (address handover): such a replica is on the
	// address only while linked and holding it. Holding lists those that
	// held it at Start; "hold" and "drop" events say what changed after.
	Address []string `json:"address,omitempty"`
	Holding []string `json:"holding,omitempty"`
	// AgentCommands are the commands the replica agents carried out, as
	// their logs say, in each agent's order.
	AgentCommands []AgentCommand     `json:"agent_commands,omitempty"`
	Injections    []Injection        `json:"injections"`
	Events        []Event            `json:"events"`
	Gaps          []Gap              `json:"gaps"`
	Samples       []Sample           `json:"samples"`
	Switches      []fsm.SwitchRecord `json:"switches"`
	Alerts        []fsm.AlertRecord  `json:"alerts"`
	// Ready is whether the cluster was healthy again after the heal
	// (leader, every voter, service steady, alerts answered) within the
	// runner's bound; NotReady says why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
}

// AgentCommand is one command a replica agent carried out.
type AgentCommand struct {
	At         time.Time `json:"at"`
	Replica    string    `json:"replica"`
	Action     string    `json:"action"` // claim, release
	Term       uint64    `json:"term"`
	Generation uint64    `json:"generation"`
}

// Injection is one step as the runner carried it out.
type Injection struct {
	Step Step `json:"step"`
	// At is when it was done and Until when it was undone (zero for an
	// instant step or one not undone).
	At    time.Time `json:"at"`
	Until time.Time `json:"until,omitzero"`
	// Node or Replica is the resolved target.
	Node    string `json:"node,omitempty"`
	Replica string `json:"replica,omitempty"`
	// Skipped says why the step was not carried out (e.g. no container
	// replicas); Err that it failed.
	Skipped string `json:"skipped,omitempty"`
	Err     string `json:"err,omitempty"`
}

// Done reports whether the injection took place.
func (i Injection) Done() bool { return i.Skipped == "" && i.Err == "" }

// Event is one thing the lab did (lab.LabEvent): to a replica (start,
// kill, suspend, resume, link, unlink, revert, dos, exploit; hold and drop
// when the service address appeared on or left an address-handover
// replica's service link), a node (node-*) or the vCenter (vc-*).
type Event struct {
	At      time.Time `json:"at"`
	Replica string    `json:"replica,omitempty"`
	Node    string    `json:"node,omitempty"`
	What    string    `json:"what"`
	Detail  string    `json:"detail,omitempty"`
	Err     string    `json:"err,omitempty"`
}

// Gap is a run of queries the lab's client lost (netlab.Gap).
type Gap struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Lost  int       `json:"lost"`
	// Open: not answered again before the end of the recording.
	Open bool `json:"open,omitempty"`
}

// Sample is one poll of every node and of the vCenter's sessions.
type Sample struct {
	At       time.Time    `json:"at"`
	Nodes    []NodeSample `json:"nodes"`
	Sessions []Session    `json:"sessions"`
	// SessionsErr is set if the sessions could not be listed (then
	// Sessions says nothing).
	SessionsErr string `json:"sessions_err,omitempty"`
}

// NodeSample is one node's status (GET /v1/status?digest=1); Err if it
// did not answer (stopped, partitioned, killed).
type NodeSample struct {
	Node   string `json:"node"`
	Err    string `json:"err,omitempty"`
	State  string `json:"state,omitempty"`
	Leader string `json:"leader,omitempty"`
	Term   uint64 `json:"term,omitempty"`
	Voters int    `json:"voters,omitempty"`
	Index  uint64 `json:"index,omitempty"`
	Digest string `json:"digest,omitempty"`
}

// Session is a live vCenter session of a node.
type Session struct {
	Key  string `json:"key"`
	Node string `json:"node"`
}

// Leader is the node that leads at the sample: the one that says it is
// leader with the highest term ("" if none answered so).
func (s Sample) Leader() string {
	best, term := "", uint64(0)
	for _, n := range s.Nodes {
		if n.Err == "" && n.State == "leader" && n.Term >= term {
			best, term = n.Node, n.Term
		}
	}
	return best
}
