package e2e

import (
	"os/exec"
	"syscall"
)

// dieWithTest has a process killed when the benchmark's process ends, even
// by a -timeout panic that runs no cleanup: a benchmark leaves no sluice
// running.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
