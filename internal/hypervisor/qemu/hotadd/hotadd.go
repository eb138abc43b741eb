// Package hotadd is the QEMU and guest side of hot-adding vCPUs and
// memory to a running VM: reading what QEMU has plugged, plugging a vCPU
// into the next free place of the topology or a DIMM on a new RAM
// backend, and having the guest, through its agent, bring them online.
// It keeps no state: the driver's vm records the hardware.
package hotadd

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/cmdline"
	"github.com/vdc-project/vdc/internal/qga"
)

// Monitor sends QMP commands to one running QEMU.
type Monitor interface {
	Execute(ctx context.Context, cmd string, args, out any) error
}

// guestOnlineWait bounds how long a hot-add waits for the guest to see
// the new devices before it brings them online.
const guestOnlineWait = 30 * time.Second

// Plugged reads the hot-added vCPUs and DIMMs from QEMU itself, so that
// a device added just before an agent died is known all the same.
func Plugged(ctx context.Context, m Monitor) ([]api.HotCPU, []api.Size, error) {
	var cpus []struct {
		Type    string         `json:"type"`
		Props   map[string]int `json:"props"`
		QOMPath string         `json:"qom-path"`
	}
	if err := m.Execute(ctx, "query-hotpluggable-cpus", nil, &cpus); err != nil {
		return nil, nil, err
	}
	var mems []struct {
		Type string `json:"type"`
		Data struct {
			ID   string `json:"id"`
			Size int64  `json:"size"`
		} `json:"data"`
	}
	if err := m.Execute(ctx, "query-memory-devices", nil, &mems); err != nil {
		return nil, nil, err
	}
	var hot []api.HotCPU
	for _, c := range cpus {
		if id, ok := strings.CutPrefix(c.QOMPath, "/machine/peripheral/"); ok {
			hot = append(hot, api.HotCPU{ID: id, Type: c.Type, Props: c.Props})
		}
	}
	slices.SortFunc(hot, func(a, b api.HotCPU) int { return suffixNum(a.ID) - suffixNum(b.ID) })
	var dimms []api.Size
	for _, mem := range mems {
		if mem.Type == "dimm" {
			if i := suffixNum(mem.Data.ID); i >= 0 {
				dimms = slices.Grow(dimms, i+1)[:max(len(dimms), i+1)]
				dimms[i] = api.Size(mem.Data.Size)
			}
		}
	}
	return hot, dimms, nil
}

// suffixNum is the number an ID like cpu3 or dimm1 ends with (-1: none).
func suffixNum(id string) int {
	i := len(id)
	for i > 0 && id[i-1] >= '0' && id[i-1] <= '9' {
		i--
	}
	n, err := strconv.Atoi(id[i:])
	if err != nil {
		return -1
	}
	return n
}

// PlugCPU adds one vCPU in the first free place of the topology.
func PlugCPU(ctx context.Context, m Monitor, hw api.VMHardware) (api.HotCPU, error) {
	var slots []struct {
		Type    string         `json:"type"`
		Props   map[string]int `json:"props"`
		QOMPath string         `json:"qom-path"`
	}
	if err := m.Execute(ctx, "query-hotpluggable-cpus", nil, &slots); err != nil {
		return api.HotCPU{}, err
	}
	var free []api.HotCPU
	for _, s := range slots {
		if s.QOMPath == "" {
			free = append(free, api.HotCPU{Type: s.Type, Props: s.Props})
		}
	}
	if len(free) == 0 {
		return api.HotCPU{}, fmt.Errorf("QEMU has no free vCPU slot")
	}
	order := []string{"node-id", "drawer-id", "book-id", "socket-id", "die-id", "cluster-id", "core-id", "thread-id"}
	slices.SortFunc(free, func(a, b api.HotCPU) int {
		for _, k := range order {
			if a.Props[k] != b.Props[k] {
				return a.Props[k] - b.Props[k]
			}
		}
		return 0
	})
	c := free[0]
	c.ID = fmt.Sprintf("cpu%d", hw.TotalCPUs())
	dev := map[string]any{"driver": c.Type, "id": c.ID}
	for k, n := range c.Props {
		dev[k] = n
	}
	if err := m.Execute(ctx, "device_add", dev, nil); err != nil {
		return api.HotCPU{}, err
	}
	return c, nil
}

// PlugDIMM adds a DIMM of size bytes in slot i.
func PlugDIMM(ctx context.Context, m Monitor, i int, size int64) error {
	if err := m.Execute(ctx, "object-add", map[string]any{"qom-type": "memory-backend-ram", "id": cmdline.DIMMBackend(i), "size": size}, nil); err != nil {
		return err
	}
	if err := m.Execute(ctx, "device_add", map[string]any{"driver": "pc-dimm", "id": cmdline.DIMMID(i), "memdev": cmdline.DIMMBackend(i)}, nil); err != nil {
		_ = m.Execute(context.WithoutCancel(ctx), "object-del", map[string]any{"id": cmdline.DIMMBackend(i)}, nil)
		return err
	}
	return nil
}

// GuestView is what the guest had before a hot-add: its logical CPUs and
// memory blocks. nil: its agent does not answer.
type GuestView struct {
	cpus   map[int]bool
	blocks map[uint64]bool
}

// Look asks the guest agent c what the guest has now (nil if it does not
// answer).
func Look(ctx context.Context, c *qga.Client) *GuestView {
	cpus, err := c.VCPUs(ctx)
	if err != nil {
		return nil
	}
	blocks, err := c.MemoryBlocks(ctx)
	if err != nil {
		return nil
	}
	g := &GuestView{cpus: map[int]bool{}, blocks: map[uint64]bool{}}
	for _, x := range cpus {
		g.cpus[x.LogicalID] = true
	}
	for _, b := range blocks {
		g.blocks[b.PhysIndex] = true
	}
	return g
}

// Online waits for the guest to see the vCPUs and memory just added (to
// cpus in all, newCPUs and newMem more than it had before) and has its
// agent c bring online those it left offline, as a guest's udev rules
// would (a Linux guest without them leaves hot-added vCPUs and memory
// offline). It says what came of it.
func Online(ctx context.Context, c *qga.Client, before *GuestView, cpus, newCPUs int, newMem int64) string {
	blockSize := int64(api.MemoryHotplugStep)
	if n, err := c.MemoryBlockSize(ctx); err == nil && n > 0 {
		blockSize = n
	}
	vcpus, newBlocks, failure := waitGuestSees(ctx, c, before, cpus, newMem, blockSize)
	if failure != "" {
		return failure
	}
	var offCPUs []int
	for _, x := range vcpus {
		if !before.cpus[x.LogicalID] && !x.Online {
			offCPUs = append(offCPUs, x.LogicalID)
		}
	}
	var offBlocks []uint64
	for _, b := range newBlocks {
		if !b.Online {
			offBlocks = append(offBlocks, b.PhysIndex)
		}
	}
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	problems := bringOnline(gctx, c, offCPUs, offBlocks)
	online := 0
	if all, err := c.VCPUs(gctx); err == nil {
		for _, x := range all {
			if x.Online {
				online++
			}
		}
	}
	what := describeAdded(newCPUs, newMem)
	if len(problems) > 0 {
		return fmt.Sprintf("the guest sees %s, but: %s", what, strings.Join(problems, "; "))
	}
	if len(offCPUs) == 0 && len(offBlocks) == 0 {
		return fmt.Sprintf("the guest brought %s online by itself; it has %d vCPUs online", what, online)
	}
	return fmt.Sprintf("the guest agent brought %s online; the guest has %d vCPUs online", what, online)
}

// waitGuestSees waits until the guest lists cpus vCPUs and newMem bytes of
// memory blocks it did not have before, and returns them; or, when it
// does not in time or its agent fails, what went wrong.
func waitGuestSees(ctx context.Context, c *qga.Client, before *GuestView, cpus int, newMem, blockSize int64) ([]qga.VCPU, []qga.MemoryBlock, string) {
	// The guest takes the new devices from ACPI events, shortly after.
	deadline := time.Now().Add(guestOnlineWait)
	var vcpus []qga.VCPU
	var newBlocks []qga.MemoryBlock
	for {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		vcpus, err = c.VCPUs(gctx)
		var blocks []qga.MemoryBlock
		if err == nil {
			blocks, err = c.MemoryBlocks(gctx)
		}
		cancel()
		if err != nil {
			return nil, nil, "cannot ask the guest agent about the new hardware: " + err.Error()
		}
		newBlocks = newBlocks[:0]
		for _, b := range blocks {
			if !before.blocks[b.PhysIndex] {
				newBlocks = append(newBlocks, b)
			}
		}
		if len(vcpus) >= cpus && int64(len(newBlocks))*blockSize >= newMem {
			return vcpus, newBlocks, ""
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, nil, fmt.Sprintf("the guest did not take the new hardware within %s (it lists %d vCPUs and %s of new memory): its kernel may lack CPU or memory hotplug",
				guestOnlineWait, len(vcpus), api.Size(int64(len(newBlocks))*blockSize))
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// bringOnline has the guest agent bring the vCPUs and memory blocks the
// guest left offline online; it returns what did not work.
func bringOnline(ctx context.Context, c *qga.Client, offCPUs []int, offBlocks []uint64) []string {
	var problems []string
	if len(offCPUs) > 0 {
		if n, err := c.OnlineVCPUs(ctx, offCPUs); err != nil || n < len(offCPUs) {
			problems = append(problems, fmt.Sprintf("%d of %d new vCPUs brought online (%v)", n, len(offCPUs), err))
		}
	}
	if len(offBlocks) > 0 {
		failed, err := c.OnlineMemoryBlocks(ctx, offBlocks)
		switch {
		case err != nil:
			problems = append(problems, "memory not brought online: "+err.Error())
		case len(failed) > 0:
			problems = append(problems, fmt.Sprintf("%d of %d new memory blocks not brought online: %v", len(failed), len(offBlocks), failed))
		}
	}
	return problems
}

func describeAdded(cpus int, mem int64) string {
	var parts []string
	if cpus == 1 {
		parts = append(parts, "1 vCPU")
	} else if cpus > 1 {
		parts = append(parts, fmt.Sprintf("%d vCPUs", cpus))
	}
	if mem > 0 {
		parts = append(parts, api.Size(mem).String()+" of memory")
	}
	return strings.Join(parts, " and ")
}
