// Package api is the client side of the ars HTTP API: the wire types of
// every route (requests, responses, status, members, peers, alerts,
// switches, history), the error identity shared with the server (APIError
// with stable codes; errors.Is matches the sentinels on both sides of the
// wire), and Client, a Go client with TLS and token authentication.
//
// It imports nothing of ars but the fsm types it returns, so detectors and
// scripts can import it without the node: package apiserver serves it.
package api
