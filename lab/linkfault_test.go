package lab

import (
	"testing"
	"time"

	"github.com/ars-project/ars/lab/chaos"
	"github.com/ars-project/ars/lab/netlab"
)

func TestLinkFaultOfAStep(t *testing.T) {
	for _, tc := range []struct {
		st   chaos.Step
		want netlab.LinkFault
		err  bool
	}{
		{chaos.Step{Kind: chaos.LinkLoss, Loss: 12}, netlab.LinkFault{Loss: 12, ToNode: true, FromNode: true}, false},
		{chaos.Step{Kind: chaos.LinkOneway, Loss: 100, Direction: chaos.DirToNode}, netlab.LinkFault{Loss: 100, ToNode: true}, false},
		{chaos.Step{Kind: chaos.LinkOneway, Loss: 100, Direction: chaos.DirFromNode}, netlab.LinkFault{Loss: 100, FromNode: true}, false},
		{chaos.Step{Kind: chaos.LinkOneway, Loss: 100, Direction: "sideways"}, netlab.LinkFault{}, true},
		{chaos.Step{Kind: chaos.LinkLoss, Loss: 0}, netlab.LinkFault{}, true},
		{chaos.Step{Kind: chaos.LinkDelay, Delay: 120 * time.Millisecond, Jitter: 30 * time.Millisecond},
			netlab.LinkFault{DelayMS: 120, JitterMS: 30, ToNode: true, FromNode: true}, false},
		{chaos.Step{Kind: chaos.LinkDelay, Delay: 120 * time.Millisecond, Jitter: 130 * time.Millisecond}, netlab.LinkFault{}, true},
	} {
		got, err := linkFault(tc.st)
		if tc.err {
			if err == nil {
				t.Errorf("%s: no error", tc.st)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.st, got, err, tc.want)
		}
	}
}
