//go:build unix

package notify

import (
	"os/exec"
	"syscall"
)

// killGroup runs the executable in its own process group and kills the
// whole group on timeout, so a script's children do not outlive it.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
