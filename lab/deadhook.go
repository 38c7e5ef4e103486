package lab

import (
	"fmt"
	"net"
	"net/netip"
)

// DeadWebhookPort is where a lab with Config.DeadWebhook listens, on the
// hub address, for the nodes' webhook notifications.
const DeadWebhookPort = 8080

// maxHeldHookConns bounds the connections the dead webhook keeps open;
// beyond it a new one is closed at once (and still counted).
const maxHeldHookConns = 4096

// DeadWebhookURL is the webhook every node of a lab with
// Config.DeadWebhook notifies ("" without it).
func (l *Lab) DeadWebhookURL() string {
	if !l.cfg.DeadWebhook {
		return ""
	}
	return "http://" + netip.AddrPortFrom(l.Net.Topology().Hub, DeadWebhookPort).String() + "/hook"
}

// DeadWebhookConnections is how many connections the nodes opened to the
// dead webhook so far: each is one delivery attempt that got no answer.
func (l *Lab) DeadWebhookConnections() int64 { return l.hookConns.Load() }

// startDeadWebhook listens on the hub for the nodes' webhook and never
// answers: it accepts each connection and holds it, unread, until Down
// (the worst a webhook receiver can do to a sender: every attempt waits
// for the sender's own timeout). startNodes writes the webhook's secret.
func (l *Lab) startDeadWebhook() error {
	ln, err := l.Net.ListenHub(DeadWebhookPort)
	if err != nil {
		return fmt.Errorf("lab: dead webhook: %w", err)
	}
	l.hookln = ln
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.hookConns.Add(1)
			if len(held) >= maxHeldHookConns {
				c.Close()
				continue
			}
			held = append(held, c)
		}
	}()
	return nil
}
