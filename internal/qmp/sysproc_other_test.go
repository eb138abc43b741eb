//go:build !linux

package qmp

import "syscall"

func killWithParent() *syscall.SysProcAttr { return nil }
