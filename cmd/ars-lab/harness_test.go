package main

import (
	"testing"

	"github.com/ars-project/ars/cmd/internal/cli/clitest"
)

// arsLab runs ars-lab with args and the given environment (nothing else
// of the test's environment).
func arsLab(t *testing.T, env map[string]string, args ...string) clitest.Result {
	t.Helper()
	return clitest.Run(t, app, env, "", args...)
}
