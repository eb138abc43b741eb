package qmp

import (
	"errors"
	"fmt"
)

// ErrClosed is wrapped in the error of a command issued after the
// connection ended (QEMU exited, or Close was called), or that was waiting
// for its answer when it ended.
var ErrClosed = errors.New("qmp connection closed")

// Error is an error answer of QEMU to a command. Class is QMP's error class
// ("GenericError", "CommandNotFound", "DeviceNotFound"...), which is the
// part worth testing for; Desc is for humans.
type Error struct {
	Class   string
	Desc    string
	Command string
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}
