package api

import "testing"

func TestParseBaseURL(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"127.0.0.1:7500", "https://127.0.0.1:7500", true},
		{"node1", "https://node1:7500", true},
		{"[::1]:8000", "https://[::1]:8000", true},
		{"::1", "https://[::1]:7500", true},
		{"https://n1.example:9000/", "https://n1.example:9000", true},
		{"http://127.0.0.1:7500/prefix/", "http://127.0.0.1:7500/prefix", true},
		{"  https://a:1  ", "https://a:1", true},
		{"", "", false},
		{"ftp://a:1", "", false},
		{"https://", "", false},
		{"https://user:pw@a:1", "", false},
		{"https://a:1/?x=1", "", false},
	}
	for _, c := range cases {
		u, err := parseBaseURL(c.in)
		if (err == nil) != c.ok {
			t.Errorf("parseBaseURL(%q) err = %v, want ok=%v", c.in, err, c.ok)
			continue
		}
		if c.ok && u.String() != c.want {
			t.Errorf("parseBaseURL(%q) = %s, want %s", c.in, u, c.want)
		}
	}
}
