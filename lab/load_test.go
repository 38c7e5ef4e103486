package lab

import (
	"strings"
	"testing"
)

const dnsperfOut = `DNS Performance Testing Tool
Version 2.11.0

[Status] Command line: dnsperf -s 10.253.53.101 -d q -l 10
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         41234
  Queries completed:    41230 (99.99%)
  Queries lost:         4 (0.01%)

  Response codes:       NOERROR 41230 (100.00%)
  Average packet size:  request 34, response 50
  Run time (s):         10.000112
  Queries per second:   4122.954

  Average Latency (s):  0.000512 (min 0.000101, max 0.011203)
`

func TestParsePerf(t *testing.T) {
	p, err := parsePerf([]byte(dnsperfOut))
	if err != nil {
		t.Fatal(err)
	}
	if p.Sent != 41234 || p.Completed != 41230 || p.Lost != 4 || p.QPS != 4122.954 {
		t.Errorf("parsed %+v", p)
	}
	_, err = parsePerf([]byte(strings.Replace(dnsperfOut, "Queries per second", "Queries/s", 1)))
	if err == nil || !strings.Contains(err.Error(), "qps") {
		t.Errorf("a summary without the rate: %v; want an error naming it", err)
	}
}
