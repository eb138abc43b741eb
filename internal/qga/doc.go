// Package qga is a client for qemu-guest-agent, the agent that runs inside a
// guest and answers over a virtio-serial port, which QEMU exposes on the
// host as a unix socket (-chardev socket,id=qga0,... plus
// -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0).
//
// The qemu driver uses it for guest heartbeats (Ping), guest facts (OS,
// host name, addresses), clean shutdown and running programs in the guest
// (Exec).
//
// The agent has no greeting and keeps no session: bytes written while it
// was not running, answers to commands whose caller gave up, and half a
// command of an earlier client may all still be in the stream. So every
// fresh connection, and every connection after a command that timed out, is
// first synchronized with guest-sync-delimited: a 0xFF byte resets the
// agent's parser, and its answer, led by a 0xFF, marks where the stale
// input ends. If no agent runs in the guest the socket still accepts, and
// nothing ever answers; every call is bounded by its ctx for that reason.
//
// The agent handles one command at a time and, like QEMU's chardev, serves
// one connection at a time: keep one Client per VM.
package qga
