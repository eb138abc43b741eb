package cmdutil

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
)

func TestLineProgressPrintsChangesOnly(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, &api.Task{}) // not a terminal: plain lines
	if _, ok := p.(*lineProgress); !ok {
		t.Fatalf("progress on a buffer is %T, want plain lines", p)
	}
	task := &api.Task{Op: "vm.create", Target: api.TaskTarget{Name: "web1"}, State: api.TaskQueued}
	p.update(task)
	p.update(task)
	task.State, task.Progress, task.Message = api.TaskRunning, 40, "copying disk"
	p.update(task)
	p.update(task)
	task.Progress = 80
	p.update(task)
	p.finish()
	want := "  0% vm.create web1: queued\n" +
		" 40% vm.create web1: copying disk\n" +
		" 80% vm.create web1: copying disk\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestTaskError(t *testing.T) {
	ok := &api.Task{Metadata: api.ObjectMeta{ID: "t1"}, State: api.TaskSucceeded}
	if err := taskError(ok); err != nil {
		t.Errorf("succeeded task: %v", err)
	}
	failed := &api.Task{Metadata: api.ObjectMeta{ID: "t2"}, State: api.TaskFailed,
		Error: &api.Error{Code: api.CodeUnprocessable, Message: "no host has room for vm web1"}}
	err := taskError(failed)
	if err == nil || !errors.Is(err, api.ErrUnprocessable) {
		t.Errorf("failed task: error %v does not keep its class", err)
	}
	if err != nil && (!strings.Contains(err.Error(), "no host has room") || !strings.Contains(err.Error(), "t2")) {
		t.Errorf("failed task: error %q should give the reason and the task ID", err)
	}
	canceled := &api.Task{Metadata: api.ObjectMeta{ID: "t3"}, State: api.TaskCanceled}
	if err := taskError(canceled); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("canceled task: error = %v", err)
	}
}
