//go:build !linux

package qga

import "syscall"

func killWithParent() *syscall.SysProcAttr { return nil }
