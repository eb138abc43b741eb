// Package qmp is a small client for the QEMU Machine Protocol, the JSON
// control socket of a running QEMU (-chardev socket,... -mon mode=control).
//
// The qemu driver uses it to power, pause, query and follow a VM: one Client
// per QEMU process, shared by every goroutine that acts on the VM. Commands
// carry an id and answers are matched by it, so callers never wait on each
// other; events are fanned out to subscribers without ever blocking the
// reader. A QEMU chardev socket serves one client at a time, so a second
// Dial to the same socket hangs until the first connection is closed (and
// then fails on its ctx deadline): keep one Client per QEMU.
//
// Only the standard library is used: the protocol is a stream of JSON
// objects and needs no more.
package qmp
