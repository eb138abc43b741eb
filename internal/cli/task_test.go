package cli

import (
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
)

func TestTaskDuration(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	started, finished := now.Add(-time.Minute), now.Add(-time.Minute+1500*time.Millisecond)
	if got := taskDuration(&api.Task{State: api.TaskQueued}, now); got != "" {
		t.Errorf("queued task duration = %q, want empty", got)
	}
	if got := taskDuration(&api.Task{Started: &started}, now); got != "1m" {
		t.Errorf("running task duration = %q, want 1m so far", got)
	}
	if got := taskDuration(&api.Task{Started: &started, Finished: &finished}, now); got != "1.5s" {
		t.Errorf("finished task duration = %q, want 1.5s", got)
	}
	if got := taskTarget(&api.Task{Target: api.TaskTarget{ID: "id1"}}); got != "id1" {
		t.Errorf("taskTarget without a name = %q", got)
	}
}

func TestTaskMessage(t *testing.T) {
	ok := &api.Task{State: api.TaskSucceeded, Message: "host host-1 failed; 3 of 3 restarted"}
	if got := taskMessage(ok); got != ok.Message {
		t.Errorf("a succeeded task's message: %q", got)
	}
	failed := &api.Task{State: api.TaskFailed, Message: "restarting", Error: &api.Error{Message: "0 of 3 restarted"}}
	if got := taskMessage(failed); got != "0 of 3 restarted" {
		t.Errorf("a failed task's message: %q", got)
	}
}
