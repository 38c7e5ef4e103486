// Package cli is the command framework shared by the ars programs: `ars`
// (the product: the agent and the admin CLI) and `ars-lab` (the lab,
// benchmark and chaos tooling). It holds the command registry and
// dispatcher (App, Command), the global flags and the node API client
// (Env), the output helpers and the exit codes. It imports no lab code: a
// program maps its own packages' errors to exit codes with App.ExitCode.
//
// Layout (govc style): one command per file (cmd_*.go) in each program,
// each registering a Command in init(); command.go here holds the
// registry, the dispatcher and help, env.go the global flags and the API
// client, exit.go the exit codes.
//
// Flags may come before the command (global flags only), after it, and
// after or between positional arguments: `ars snapshot save out.snap
// -force` works. "--" ends flag parsing; "-" is a positional argument
// (stdin or stdout where a command accepts it).
//
// Global flags, with their environment fallbacks (a flag beats the
// environment); the API ones only where a command talks to a node:
//
//	-addr         ARS_HTTP_ADDR        node API address (default 127.0.0.1:7500)
//	-token        ARS_HTTP_TOKEN       API token
//	-token-file   ARS_HTTP_TOKEN_FILE  file holding the API token
//	-ca-file      ARS_CACERT           CA certificate to verify the node
//	-client-cert  ARS_CLIENT_CERT      client certificate (with -client-key)
//	-client-key   ARS_CLIENT_KEY       client key
//	-tls-server-name ARS_TLS_SERVER_NAME  name expected in the node certificate
//	-o            table | json         output format
//	-timeout      10s                  limit for the whole API operation
//
// An -addr without a scheme means https, except that a loopback address
// with no TLS material (-ca-file, -client-cert) means http, so `ars status`
// works against `ars agent -dev` out of the box; if the node actually
// speaks HTTPS the error says so.
//
// Exit codes: 0 success; 1 the operation failed (the node answered with an
// error, or a local file could not be read or written); 2 usage error (bad
// command, flags or arguments); 3 the node could not be reached, or TLS
// failed (including unusable -ca-file/-client-cert files). Every failure
// prints exactly one line "NAME: <reason>" on stderr, NAME the program's.
package cli
