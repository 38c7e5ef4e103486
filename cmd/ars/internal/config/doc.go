// Package config loads, defaults and validates the configuration file of an
// ars agent (`ars agent -config FILE`).
//
// The file is YAML. Unknown keys, duplicate keys, values of the wrong type and
// semantically invalid values are all rejected, and every error names the
// file and the line of the offending key in the form
//
//	FILE:LINE: field.path: reason
//
// For a missing required key the line is that of the parent mapping's key, or
// line 1 for a missing top-level key. Validate collects all problems it finds;
// several errors are joined with newlines, one per line, sorted by line.
//
// Decisions beyond the interface contract:
//
//   - Relative file paths (tls.*, gossip_key_file, tokens_file, data_dir,
//     vcenter.*_file, vcenters[].*_file, docker.hosts[].tls.*) are resolved against the directory
//     of the config file by Load, so the returned Agent holds usable paths.
//   - After Load, AdvertiseAddr is always set: it defaults to BindAddr when
//     BindAddr is a specific address.
//   - join entries must be host:port (the gossip port is not guessed).
//   - TLS files must exist, the certificate must match the key and the CA
//     file must hold at least one PEM certificate; the gossip key file must
//     hold base64 of 16, 24 or 32 bytes. The tokens file is only checked for
//     existence; its content is validated by transport.LoadTokens.
//   - Raft timings mirror hashicorp/raft's own checks (lease <= heartbeat <=
//     election); gossip.probe_timeout must be shorter than probe_interval.
//   - The optional vcenter and docker sections carry the driver settings named
//     in docs/design.md §6 (vCenter URL and credential files, Docker hosts).
//     Several vCenters go in the vcenters list, each with a name that VM
//     replicas use; the single vcenter section is the one-vCenter
//     shorthand (named after its URL's host unless it has a name). The two
//     forms are exclusive; names and URLs must differ (VCenterList).
//   - A dev config (Dev) keeps Raft in memory (empty DataDir) and has no TLS,
//     gossip key or tokens; those keys become optional.
package config
