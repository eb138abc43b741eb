package ha_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// A reset of a hung guest keeps what its console showed, resets the VM on
// its host and counts the reset; one whose guest answers again by the
// time the task runs is not reset.
func TestHAResetOfAHungGuest(t *testing.T) {
	w := newWorld(t, "h1")
	hung := w.vm("hung", "h1", api.PowerOn, "", 1<<30)
	ok := w.vm("ok", "h1", api.PowerOn, "", 1<<30)
	ctx := context.Background()
	for _, v := range []struct {
		vm    *api.VM
		guest string
	}{{hung, api.GuestNotResponding}, {ok, api.GuestRunning}} {
		err := state.Update(ctx, w.st, nil, v.vm.Metadata.ID, func(vm *api.VM) error {
			vm.Status.PowerChanged = time.Now().Add(-2 * time.Hour)
			vm.Status.Guest = &api.GuestInfo{State: v.guest, LastSeen: time.Now().Add(-time.Hour)}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	w.fake.On["ConsoleLog"] = func(hoststest.Call) ([]any, error) { return []any{[]byte("kernel panic")}, nil }
	reset := func(vm *api.VM) *api.Task {
		tk, err := w.sub.Submit(ctx, w.st.Store.Txn(), tasks.New(ctx, api.OpVMHAReset, vm, nil))
		if err != nil {
			t.Fatal(err)
		}
		return w.wait(tk.Metadata.ID)
	}

	tk := reset(hung)
	if tk.State != api.TaskSucceeded || !strings.Contains(string(tk.Result), "kernel panic") || !strings.Contains(string(tk.Result), "guest agent silent for 1h0m0s") {
		t.Fatalf("reset: %s %s %+v", tk.State, tk.Result, tk.Error)
	}
	if got := w.fake.Methods(); len(got) != 2 || got[0] != "ConsoleLog" || got[1] != "Power" {
		t.Errorf("host calls: %v", got)
	}
	if vm, _ := state.Get[*api.VM](w.st, hung.Metadata.ID); len(vm.Status.HAResets) != 1 {
		t.Errorf("resets counted: %v", vm.Status.HAResets)
	}

	tk = reset(ok)
	if tk.State != api.TaskFailed || tk.Error.Message != "vm ok not reset: guest agent answers" {
		t.Errorf("reset of a guest that answers: %s %+v", tk.State, tk.Error)
	}
	if n := len(w.fake.Calls()); n != 2 {
		t.Errorf("%d host calls after a reset that was not needed, want 2", n)
	}
}
