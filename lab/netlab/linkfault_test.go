package netlab

import (
	"strings"
	"testing"
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
		{"no loss", LinkFault{Loss: 0, ToNode: true}, ""},
		{"over 100", LinkFault{Loss: 101, ToNode: true}, ""},
		{"no direction", LinkFault{Loss: 10}, ""},
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

func TestLinkClearScript(t *testing.T) {
	if got, want := linkClearScript("ars_link_2"), "table bridge ars_link_2\ndelete table bridge ars_link_2\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
