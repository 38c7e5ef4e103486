package chaos

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGenerateIsDeterministicAndBounded(t *testing.T) {
	seen := map[Kind]int{}
	for seed := int64(1); seed <= 300; seed++ {
		s := Generate(seed, Options{Length: 20 * time.Second})
		if again := Generate(seed, Options{Length: 20 * time.Second}); !reflect.DeepEqual(s, again) {
			t.Fatalf("seed %d: two different schedules", seed)
		}
		attacks := 0
		var nodeEnd time.Duration
		for i, st := range s.Steps {
			seen[st.Kind]++
			if i > 0 && st.At < s.Steps[i-1].At {
				t.Fatalf("seed %d: steps out of order: %v", seed, s.Steps)
			}
			if st.At < 0 || st.End() > s.Length-tailQuiet {
				t.Fatalf("seed %d: step %s does not end %s before the schedule's end (%s)", seed, st, tailQuiet, s.Length)
			}
			if st.Kind.IsAttack() {
				attacks++
			}
			if st.Kind.IsNodeFault() {
				if st.At < nodeEnd {
					t.Fatalf("seed %d: two node faults at once: %v", seed, s.Steps)
				}
				nodeEnd = st.End()
				if st.Duration < time.Second || st.Duration > 4*time.Second {
					t.Fatalf("seed %d: node fault of %s", seed, st.Duration)
				}
			}
			if st.Kind.IsLinkFault() {
				if st.Duration < time.Second || st.Duration > 4*time.Second {
					t.Fatalf("seed %d: link fault of %s", seed, st.Duration)
				}
				if st.Target != TargetLeader && st.Target != TargetFollower {
					t.Fatalf("seed %d: link fault on %q", seed, st.Target)
				}
				switch st.Kind {
				case LinkLoss:
					if st.Loss < 1 || st.Loss > maxLinkLoss || st.Direction != "" {
						t.Fatalf("seed %d: %s", seed, st)
					}
				case LinkOneway:
					if st.Loss != 100 || st.Direction != DirToNode && st.Direction != DirFromNode {
						t.Fatalf("seed %d: %s", seed, st)
					}
				case LinkDelay:
					if st.Delay < minLinkDelay || st.Delay > maxLinkDelay || st.Jitter < 0 || st.Jitter > st.Delay/2 ||
						st.Loss != 0 || st.Direction != "" {
						t.Fatalf("seed %d: %s", seed, st)
					}
				}
				seen[Kind(string(st.Kind)+"/"+st.Target+"/"+st.Direction)]++
			}
			if st.Kind == DockerRestart {
				t.Fatalf("seed %d: a Docker restart in a lab without containers", seed)
			}
		}
		if attacks < 2 {
			t.Fatalf("seed %d: %d attacks: %v", seed, attacks, s.Steps)
		}
	}
	for _, k := range []Kind{AttackDoS, AttackExploit, NodeKill, NodeStop, NodePartition, VCDelay, VCFail, VCTerminate, LinkLoss, LinkOneway,
		"link-loss/leader/", "link-loss/follower/", "link-oneway/leader/to", "link-oneway/leader/from",
		"link-oneway/follower/to", "link-oneway/follower/from", LinkDelay, "link-delay/leader/", "link-delay/follower/"} {
		if seen[k] == 0 {
			t.Errorf("300 seeds never gave a %s step", k)
		}
	}
	if reflect.DeepEqual(Generate(1, Options{}), Generate(2, Options{})) {
		t.Fatal("seeds 1 and 2 give the same schedule")
	}
}

func TestGenerateRestartsDockerOnlyWithContainers(t *testing.T) {
	n := 0
	for seed := int64(1); seed <= 300; seed++ {
		for _, st := range Generate(seed, Options{Containers: true}).Steps {
			if st.Kind == DockerRestart {
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("with containers, 300 seeds never restarted the Docker engine")
	}
}

// Link faults never overlap a node fault or each other (with half a
// second between), so a quorum of healthy links always remains.
func TestGenerateKeepsLinkFaultsApart(t *testing.T) {
	for seed := int64(1); seed <= 300; seed++ {
		s := Generate(seed, Options{Length: 20 * time.Second})
		var outs []Step
		for _, st := range s.Steps {
			if st.Kind.IsNodeFault() || st.Kind.IsLinkFault() {
				outs = append(outs, st)
			}
		}
		for i, a := range outs {
			for _, b := range outs[i+1:] {
				if !a.Kind.IsLinkFault() && !b.Kind.IsLinkFault() {
					continue // node faults keep their own spacing (above)
				}
				if b.At < a.End()+500*time.Millisecond {
					t.Fatalf("seed %d: %s and %s overlap", seed, a, b)
				}
			}
		}
	}
}

// The link faults came last to the generator, and the delayed links after
// them: a seed's other steps are the ones it drew before (seed 1's as
// pinned here), so earlier runs of a seed stay comparable.
func TestGenerateSeedOnePinned(t *testing.T) {
	var got []string
	for _, st := range Generate(1, Options{Length: 20 * time.Second}).Steps {
		got = append(got, st.String())
	}
	want := []string{
		"  1.28s attack-dos active",
		"  2.83s link-loss follower loss 13% for 2.283s",
		"  6.66s attack-dos active",
		"  9.23s link-loss follower loss 6% for 2.423s",
		" 12.50s attack-dos active",
		" 13.34s node-kill leader for 2.528s",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("seed 1:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Disk faults come only with Options.Disks, drawn after everything else:
// a seed's other steps stay the same; they keep apart from node and link
// faults like link faults do, with the node's recovery after them, and a
// stall may outlast the product's disk probe timeout (2 s) or not.
func TestGenerateDiskFaults(t *testing.T) {
	seen := map[string]int{}
	for seed := int64(1); seed <= 300; seed++ {
		without := Generate(seed, Options{Length: 20 * time.Second})
		with := Generate(seed, Options{Length: 20 * time.Second, Disks: true})
		var rest []Step
		var outs []Step
		for _, st := range with.Steps {
			if st.Kind == NodeRestart {
				t.Fatalf("seed %d: a schedule with a %s step", seed, st.Kind)
			}
			if st.Kind.IsNodeFault() || st.Kind.IsLinkFault() || st.Kind.IsDiskFault() {
				outs = append(outs, st)
			}
			if !st.Kind.IsDiskFault() {
				rest = append(rest, st)
				continue
			}
			if st.Target != TargetLeader && st.Target != TargetFollower {
				t.Fatalf("seed %d: %s on %q", seed, st.Kind, st.Target)
			}
			hi := 4 * time.Second
			if st.Kind == DiskStall {
				hi = maxDiskStall
			}
			if st.Duration < time.Second || st.Duration > hi {
				t.Fatalf("seed %d: %s", seed, st)
			}
			long := st.Kind == DiskStall && st.Duration > 2*time.Second
			seen[fmt.Sprintf("%s/%s/long=%t", st.Kind, st.Target, long)]++
		}
		if !reflect.DeepEqual(rest, without.Steps) {
			t.Fatalf("seed %d: the disk faults moved the other steps:\n%v\nwant\n%v", seed, rest, without.Steps)
		}
		for i, a := range outs {
			for _, b := range outs[i+1:] {
				gap := 500 * time.Millisecond
				if a.Kind.IsDiskFault() {
					gap = diskRecovery // the node recovers after the step
				}
				if (a.Kind.IsDiskFault() || b.Kind.IsDiskFault()) && b.At < a.End()+gap {
					t.Fatalf("seed %d: %s and %s are less than %s apart", seed, a, b, gap)
				}
			}
		}
	}
	for _, k := range []string{"disk-full/leader/long=false", "disk-full/follower/long=false",
		"disk-stall/leader/long=false", "disk-stall/leader/long=true", "disk-stall/follower/long=true"} {
		if seen[k] == 0 {
			t.Errorf("300 seeds never gave a %s step (saw %v)", k, seen)
		}
	}
}

// TestGenerateAgentFaults: only a lab with agents gets agent faults; they
// leave the other steps where they were; a kill or a cut strikes the
// active or the standby for 1-4 s; a rogue replica is the active, from
// shortly before an attack until after it.
func TestGenerateAgentFaults(t *testing.T) {
	seen := map[string]int{}
	for seed := int64(1); seed <= 300; seed++ {
		o := Options{Length: 20 * time.Second, Disks: true}
		without := Generate(seed, o)
		o.Agents = true
		with := Generate(seed, o)
		var rest []Step
		for _, st := range without.Steps {
			if st.Kind.IsAgentFault() {
				t.Fatalf("seed %d: %s without agents", seed, st)
			}
		}
		for _, st := range with.Steps {
			if !st.Kind.IsAgentFault() {
				rest = append(rest, st)
				continue
			}
			seen[string(st.Kind)+"/"+st.Target]++
			if st.End() > with.Length-tailQuiet || st.Duration <= 0 {
				t.Fatalf("seed %d: %s ends after the quiet tail or lasts nothing", seed, st)
			}
			if st.Kind != AgentRogue {
				if st.Duration < time.Second || st.Duration > 4*time.Second {
					t.Fatalf("seed %d: %s", seed, st)
				}
				continue
			}
			if st.Target != TargetActive {
				t.Fatalf("seed %d: a rogue %s", seed, st.Target)
			}
			if !slices.ContainsFunc(with.Steps, func(a Step) bool { return a.Kind.IsAttack() && a.At >= st.At && a.At < st.End() }) {
				t.Fatalf("seed %d: %s covers no attack", seed, st)
			}
		}
		if !reflect.DeepEqual(rest, without.Steps) {
			t.Fatalf("seed %d: the agent faults moved the other steps:\n%v\nwant\n%v", seed, rest, without.Steps)
		}
	}
	for _, k := range []string{"agent-kill/active", "agent-kill/standby", "agent-cut/active", "agent-cut/standby", "agent-rogue/active"} {
		if seen[k] == 0 {
			t.Errorf("300 seeds never gave a %s step (saw %v)", k, seen)
		}
	}
}
