package server

// Claims. Some names are picked when a request comes in but recorded only
// when its task ends: a snapshot's, a new disk's (and its hot-plug slot),
// the VMs an import makes. The request claims each in the transaction
// that queues its task (a key in the store naming the task, listed in
// Task.Claims), and that transaction also checks that the VM it decided
// from is unchanged; the transaction that records the task's outcome lets
// the claims go. So two requests at once cannot both pick one name, and a
// name a task recorded just before is seen.
