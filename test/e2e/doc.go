// Package e2e holds end-to-end tests of ars: in-process clusters of full
// agents talking HTTPS and mutual TLS (api_test.go), three `ars agent`
// processes driven through the CLI (process_test.go), and the apply-latency
// benchmark (bench_test.go).
package e2e
