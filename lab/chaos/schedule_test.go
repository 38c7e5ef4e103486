package chaos

import (
	"reflect"
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
			if st.Kind == DockerRestart {
				t.Fatalf("seed %d: a Docker restart in a lab without containers", seed)
			}
		}
		if attacks < 2 {
			t.Fatalf("seed %d: %d attacks: %v", seed, attacks, s.Steps)
		}
	}
	for _, k := range []Kind{AttackDoS, AttackExploit, NodeKill, NodeStop, NodePartition, VCDelay, VCFail, VCTerminate} {
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
