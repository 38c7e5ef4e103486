package netlab

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestLinkFaultScript(t *testing.T) {
	clear := "table bridge ars_link_1\ndelete table bridge ars_link_1\n"
	from := "\tchain from_node {\n\t\ttype filter hook prerouting priority -300; policy accept;\n\t\tiifname \"ars-n1\" "
	to := "\tchain to_node {\n\t\ttype filter hook postrouting priority 300; policy accept;\n\t\toifname \"ars-n1\" "
	for _, tc := range []struct {
		name string
		f    LinkFault
		want string // "" : an error
	}{
		{"loss both ways", LinkFault{Loss: 17, ToNode: true, FromNode: true},
			clear + "table bridge ars_link_1 {\n" + from + "numgen random mod 100 < 17 drop\n\t}\n" + to + "numgen random mod 100 < 17 drop\n\t}\n}\n"},
		{"one way to the node", LinkFault{Loss: 100, ToNode: true},
			clear + "table bridge ars_link_1 {\n" + to + "drop\n\t}\n}\n"},
		{"one way from the node", LinkFault{Loss: 100, FromNode: true},
			clear + "table bridge ars_link_1 {\n" + from + "drop\n\t}\n}\n"},
		{"1 percent", LinkFault{Loss: 1, FromNode: true},
			clear + "table bridge ars_link_1 {\n" + from + "numgen random mod 100 < 1 drop\n\t}\n}\n"},
		{"delay alone: no bridge rule", LinkFault{DelayMS: 100, JitterMS: 20, ToNode: true, FromNode: true}, clear},
		{"loss and delay: the loss", LinkFault{Loss: 5, DelayMS: 10, FromNode: true},
			clear + "table bridge ars_link_1 {\n" + from + "numgen random mod 100 < 5 drop\n\t}\n}\n"},
		{"no loss, no delay", LinkFault{Loss: 0, ToNode: true}, ""},
		{"over 100", LinkFault{Loss: 101, ToNode: true}, ""},
		{"no direction", LinkFault{Loss: 10}, ""},
		{"negative loss", LinkFault{Loss: -1, DelayMS: 10, ToNode: true}, ""},
		{"delay over a second", LinkFault{DelayMS: 1001, ToNode: true}, ""},
		{"jitter over the delay", LinkFault{DelayMS: 10, JitterMS: 11, ToNode: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := linkFaultScript("ars_link_1", "ars-n1", tc.f)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("no error; script:\n%s", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("script:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestLinkFaultScriptRefusesStrangeNames(t *testing.T) {
	f := LinkFault{Loss: 5, ToNode: true}
	for _, port := range []string{"", "a\"; flush ruleset", "a b", strings.Repeat("a", 33)} {
		if s, err := linkFaultScript("ars_link_0", port, f); err == nil {
			t.Errorf("port %q: no error; script:\n%s", port, s)
		}
	}
	if s, err := linkFaultScript("t;x", "ars-n0", f); err == nil {
		t.Errorf("table t;x: no error; script:\n%s", s)
	}
}

func TestDelayRules(t *testing.T) {
	head := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
	in := "-A INPUT ! -i lo -j NFQUEUE --queue-num 100 --queue-bypass\n"
	out := "-A OUTPUT ! -o lo -j NFQUEUE --queue-num 100 --queue-bypass\n"
	for _, tc := range []struct {
		f    LinkFault
		want string
	}{
		{LinkFault{DelayMS: 50, ToNode: true, FromNode: true}, head + in + out + "COMMIT\n"},
		{LinkFault{DelayMS: 50, FromNode: true}, head + out + "COMMIT\n"},
		{LinkFault{DelayMS: 50, Loss: 100, ToNode: true}, head + "COMMIT\n"}, // nothing is left to delay
		{LinkFault{Loss: 10, ToNode: true}, head + "COMMIT\n"},
		{LinkFault{}, head + "COMMIT\n"},
	} {
		if got := delayRules(tc.f); got != tc.want {
			t.Errorf("%+v:\n%s\nwant:\n%s", tc.f, got, tc.want)
		}
	}
}

func TestLinkClearScript(t *testing.T) {
	if got, want := linkClearScript("ars_link_2"), "table bridge ars_link_2\ndelete table bridge ars_link_2\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestNodeLinkFault: a one-way fault silences a node's answers but not the
// questions to it, a fault both ways cuts it off while its link stays up,
// bad input changes nothing, and clearing restores the link.
func TestNodeLinkFault(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (nftables)")
	}
	l, ctx := upTwoNodes(t)
	p, err := l.RunNode("n2", dnsd(t), "-listen", netip.AddrPortFrom(l.NodeAddr("n2"), 53).String(), "-a", answer2.String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Kill() }()
	ask := func() bool { // one query from n1 to n2
		out, _ := l.ExecNode(ctx, "n1", "dig", "+short", "+time=1", "+tries=1", "@"+l.NodeAddr("n2").String(), "www.lab.internal", "A")
		return strings.TrimSpace(string(out)) == answer2.String()
	}
	answered := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ask() {
			if time.Now().After(deadline) {
				t.Fatal("n2 does not answer n1")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	silent := func(what string) {
		t.Helper()
		for i := 0; i < 3; i++ {
			if ask() {
				t.Fatalf("%s: n2 answered n1", what)
			}
		}
	}
	faulty := func(want bool) {
		t.Helper()
		if got, err := l.NodeLinkFaulty("n2"); err != nil || got != want {
			t.Fatalf("NodeLinkFaulty(n2) = %v, %v; want %v", got, err, want)
		}
	}
	answered()
	faulty(false)
	if err := l.SetNodeLinkFault("n2", LinkFault{Loss: 0, ToNode: true}); err == nil {
		t.Fatal("a fault of 0 % was accepted")
	}
	if err := l.SetNodeLinkFault("n9", LinkFault{Loss: 5, ToNode: true}); err == nil {
		t.Fatal("a fault on an unknown node was accepted")
	}
	faulty(false)

	if err := l.SetNodeLinkFault("n2", LinkFault{Loss: 100, FromNode: true}); err != nil {
		t.Fatal(err)
	}
	faulty(true)
	silent("n2 mute")
	// Replaced, not added to: both ways now.
	if err := l.SetNodeLinkFault("n2", LinkFault{Loss: 100, ToNode: true, FromNode: true}); err != nil {
		t.Fatal(err)
	}
	silent("n2 cut off both ways")
	if up, err := l.NodeLinked("n2"); err != nil || !up {
		t.Fatalf("NodeLinked(n2) = %v, %v under a link fault; want up", up, err)
	}
	if err := l.ClearNodeLinkFault("n2"); err != nil {
		t.Fatal(err)
	}
	faulty(false)
	answered()
	if err := l.ClearNodeLinkFault("n2"); err != nil {
		t.Fatalf("clearing twice: %v", err)
	}
}

// TestNodeLinkDelay: a delay on a node's link holds its frames both ways
// (a query to it and its answer each wait the delay), the frames are
// counted, and clearing the fault makes it fast again.
func TestNodeLinkDelay(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (nftables)")
	}
	l, ctx := upTwoNodes(t)
	p, err := l.RunNode("n2", dnsd(t), "-listen", netip.AddrPortFrom(l.NodeAddr("n2"), 53).String(), "-a", answer2.String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Kill() }()
	// rtt is the time of one answered query from n1 to n2 (0: none).
	rtt := func() time.Duration {
		start := time.Now()
		out, _ := l.ExecNode(ctx, "n1", "dig", "+short", "+time=2", "+tries=1", "@"+l.NodeAddr("n2").String(), "www.lab.internal", "A")
		if strings.TrimSpace(string(out)) != answer2.String() {
			return 0
		}
		return time.Since(start)
	}
	var base time.Duration
	deadline := time.Now().Add(10 * time.Second)
	for base = rtt(); base == 0; base = rtt() {
		if time.Now().After(deadline) {
			t.Fatal("n2 does not answer n1")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := l.SetNodeLinkFault("n2", LinkFault{DelayMS: 150, JitterMS: 20, ToNode: true, FromNode: true}); err != nil {
		t.Fatal(err)
	}
	// Query and answer each wait 130-170 ms: at least 260 ms more than
	// dig's own time, which base bounds (the process start included).
	slow := rtt()
	if slow == 0 || slow < 260*time.Millisecond {
		t.Fatalf("under a 150±20 ms delay both ways a query took %s (answered: %v); want at least 260 ms", slow, slow > 0)
	}
	if n := l.DelayedFrames("n2"); n < 2 {
		t.Fatalf("%d frames delayed; want the query and the answer at least", n)
	}
	if err := l.ClearNodeLinkFault("n2"); err != nil {
		t.Fatal(err)
	}
	if n := l.DelayedFrames("n2"); n != 0 {
		t.Fatalf("%d frames counted after the fault ended", n)
	}
	fast := rtt()
	if fast == 0 || fast >= 260*time.Millisecond+base {
		t.Fatalf("after the fault a query took %s (before it %s)", fast, base)
	}
	t.Logf("query time: %s before, %s under 150±20 ms both ways, %s after", base, slow, fast)
}
