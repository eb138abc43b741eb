package qga

import "syscall"

// killWithParent makes the kernel kill a test's qemu-ga if the test binary
// dies without running its cleanups (a test timeout, a kill).
func killWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
