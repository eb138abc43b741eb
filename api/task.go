package api

import (
	"encoding/json"
	"time"
)

// Task states.
const (
	TaskQueued    = "queued"
	TaskRunning   = "running"
	TaskSucceeded = "succeeded"
	TaskFailed    = "failed"
	TaskCanceled  = "canceled"
)

// TaskDone reports whether a task in state s has finished.
func TaskDone(s string) bool {
	return s == TaskSucceeded || s == TaskFailed || s == TaskCanceled
}

// Task records one change to the datacenter, from the request that asked
// for it to its result. Every state-changing call returns one.
type Task struct {
	Metadata ObjectMeta `json:"metadata"`
	Op       string     `json:"op"` // vm.create, vm.power, host.maintenance...
	Target   TaskTarget `json:"target"`
	Owner    string     `json:"owner"`
	State    string     `json:"state"`
	Progress int        `json:"progress"` // 0-100
	Message  string     `json:"message,omitempty"`
	Error    *Error     `json:"error,omitempty"`
	// Params are the validated request, kept so a new leader can resume.
	Params   json.RawMessage `json:"params,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Started  *time.Time      `json:"started,omitempty"`
	Finished *time.Time      `json:"finished,omitempty"`
	// Server is the management server that ran it.
	Server string `json:"server,omitempty"`
	// CancelRequested is set by POST /api/v1/tasks/{id}/cancel; the task
	// stops and undoes what it did, and ends canceled.
	CancelRequested bool `json:"cancelRequested,omitempty"`
	// Parent is the task that started this one (a maintenance task starts
	// one migration per VM).
	Parent string `json:"parent,omitempty"`
	// Claims are the names the task reserved when it was asked for and
	// records when it ends (a snapshot's, a new disk's, an import's VMs'),
	// such as "vms/ID/snapshots/NAME": no other request gets them until it
	// has ended.
	Claims []string `json:"claims,omitempty"`
}

type TaskTarget struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

func (o *Task) GetMeta() *ObjectMeta { return &o.Metadata }
func (o *Task) Kind() string         { return KindTask }

// Event types on /api/v1/events.
const (
	EventTask           = "task"            // a task was queued, progressed or finished
	EventVMPower        = "vm.power"        // a VM's power state changed
	EventHostConnection = "host.connection" // a host connected or disconnected
	EventHostHA         = "host.ha"         // HA declared a host failed, or it came back
	EventCreated        = "created"         // an inventory object was created
	EventDeleted        = "deleted"         // ... or deleted
)

// Event is one message on the /api/v1/events stream (SSE). Seq is the
// store revision of the change; send it back as Last-Event-ID to resume.
type Event struct {
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Kind    string    `json:"kind"`
	ID      string    `json:"id"`
	Name    string    `json:"name,omitempty"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Message string    `json:"message,omitempty"`
	Task    *Task     `json:"task,omitempty"`
}

// List is the body of every list call.
type List[T any] struct {
	Items []T `json:"items"`
	// Revision is the store revision the list was read at.
	Revision int64 `json:"revision"`
}
