package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/moby/moby/client"

	"github.com/ars-project/ars/controller/docker"
)

// dockerPids finds a container replica's process for its replica agent
// (replicaagent.ContainerEngine) on a local Docker engine.
type dockerPids struct {
	cli     *client.Client
	replica string
}

func newDockerPids(endpoint, replica string) (*dockerPids, error) {
	if !strings.HasPrefix(endpoint, "unix://") {
		return nil, fmt.Errorf("-docker-host %q: the agent enters the container's namespace, so its engine must be this host's (a unix:// socket)", endpoint)
	}
	cli, err := client.New(client.WithHost(endpoint), client.WithUserAgent("ars-replica-agent"))
	if err != nil {
		return nil, fmt.Errorf("docker engine %s: %w", endpoint, err)
	}
	return &dockerPids{cli: cli, replica: replica}, nil
}

// Pid is the container's main process (0 when it does not run). A
// container that is not the replica's (its ars.replica label names
// another, or none) is refused: the agent never touches what ars did not
// create for this replica.
func (d *dockerPids) Pid(ctx context.Context, name string) (int, error) {
	res, err := d.cli.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		return 0, fmt.Errorf("inspect: %w", err)
	}
	c := res.Container
	if c.Config == nil || c.State == nil {
		return 0, fmt.Errorf("inspect %s: incomplete answer from the engine", name)
	}
	if owner := c.Config.Labels[docker.LabelReplica]; owner != d.replica {
		return 0, fmt.Errorf("container %s is labelled %s=%q, not this agent's replica %q", name, docker.LabelReplica, owner, d.replica)
	}
	if !c.State.Running {
		return 0, nil
	}
	return c.State.Pid, nil
}

func (d *dockerPids) Close() error { return d.cli.Close() }
