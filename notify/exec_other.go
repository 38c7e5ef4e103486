//go:build !unix

package notify

import "os/exec"

// killGroup: only the executable itself is killed on timeout here.
func killGroup(*exec.Cmd) {}
