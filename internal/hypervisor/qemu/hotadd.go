package qemu

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/cmdline"
	"github.com/vdc-project/vdc/internal/qga"
)

var _ hypervisor.Hotplugger = (*Driver)(nil)

// guestOnlineWait bounds how long a hot-add waits for the guest to see
// the new devices before it brings them online.
const guestOnlineWait = 30 * time.Second

// Hardware is the running VM's hardware, as its QEMU has it now.
func (d *Driver) Hardware(ctx context.Context, id string) (api.VMHardware, error) {
	v, err := d.get(id)
	if err != nil {
		return api.VMHardware{}, err
	}
	if err := v.wrongState("read the hardware of", hypervisor.StateOn, hypervisor.StateSuspended); err != nil {
		return api.VMHardware{}, err
	}
	if err := v.syncHardware(ctx); err != nil {
		return api.VMHardware{}, fmt.Errorf("hardware of vm %s: %w", v.cfg.Name, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.hw, nil
}

// syncHardware reads the hot-added vCPUs and DIMMs from QEMU itself, so
// that a device added just before an agent died is known all the same.
func (v *vm) syncHardware(ctx context.Context) error {
	var cpus []struct {
		Type    string         `json:"type"`
		Props   map[string]int `json:"props"`
		QOMPath string         `json:"qom-path"`
	}
	if err := v.query(ctx, "query-hotpluggable-cpus", &cpus); err != nil {
		return err
	}
	var mems []struct {
		Type string `json:"type"`
		Data struct {
			ID   string `json:"id"`
			Size int64  `json:"size"`
		} `json:"data"`
	}
	if err := v.query(ctx, "query-memory-devices", &mems); err != nil {
		return err
	}
	var hot []api.HotCPU
	for _, c := range cpus {
		if id, ok := strings.CutPrefix(c.QOMPath, "/machine/peripheral/"); ok {
			hot = append(hot, api.HotCPU{ID: id, Type: c.Type, Props: c.Props})
		}
	}
	slices.SortFunc(hot, func(a, b api.HotCPU) int { return suffixNum(a.ID) - suffixNum(b.ID) })
	var dimms []api.Size
	for _, m := range mems {
		if m.Type == "dimm" {
			if i := suffixNum(m.Data.ID); i >= 0 {
				dimms = slices.Grow(dimms, i+1)[:max(len(dimms), i+1)]
				dimms[i] = api.Size(m.Data.Size)
			}
		}
	}
	v.mu.Lock()
	v.hw.HotCPUs, v.hw.DIMMs = hot, dimms
	v.mu.Unlock()
	return nil
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

// HotAdd plugs vCPUs (device_add of the CPU model, in the next free place
// of the topology) and memory (a pc-dimm on a new RAM backend) into the
// running VM, then asks the guest, through its agent, to bring them
// online. Nothing is ever unplugged.
func (d *Driver) HotAdd(ctx context.Context, id string, cpus int, memoryBytes int64) (hypervisor.HotAddResult, error) {
	var res hypervisor.HotAddResult
	v, err := d.get(id)
	if err != nil {
		return res, err
	}
	name := v.cfg.Name
	switch {
	case v.isIncoming():
		return res, fmt.Errorf("hot-add to vm %s: it is being received by a migration: %w", name, hypervisor.ErrWrongState)
	case v.migrating():
		return res, fmt.Errorf("hot-add to vm %s: it is migrating: %w", name, hypervisor.ErrWrongState)
	}
	if err := v.wrongState("hot-add to", hypervisor.StateOn); err != nil {
		return res, err
	}
	if err := v.syncHardware(ctx); err != nil {
		return res, fmt.Errorf("hot-add to vm %s: %w", name, err)
	}
	v.mu.Lock()
	hw := v.hw
	v.mu.Unlock()
	if cpus == 0 {
		cpus = hw.TotalCPUs()
	}
	if memoryBytes == 0 {
		memoryBytes = int64(hw.TotalMemory())
	}
	if err := hypervisor.CheckHotAdd(name, hw, cpus, api.Size(memoryBytes)); err != nil {
		return res, err
	}
	newCPUs, newMem := cpus-hw.TotalCPUs(), memoryBytes-int64(hw.TotalMemory())
	if newCPUs == 0 && newMem == 0 {
		return hypervisor.HotAddResult{Hardware: hw, Guest: "nothing to add"}, nil
	}
	before := v.guestView(ctx)
	for hw.TotalCPUs() < cpus {
		c, err := v.plugCPU(ctx, hw)
		if err != nil {
			v.save()
			return res, fmt.Errorf("hot-add a vCPU to vm %s: %w", name, err)
		}
		hw.HotCPUs = append(hw.HotCPUs, c)
		v.mu.Lock()
		v.hw.HotCPUs = hw.HotCPUs
		v.mu.Unlock()
	}
	if newMem > 0 {
		if err := v.plugDIMM(ctx, len(hw.DIMMs), newMem); err != nil {
			v.save()
			return res, fmt.Errorf("hot-add %s of memory to vm %s: %w", api.Size(newMem), name, err)
		}
		hw.DIMMs = append(hw.DIMMs, api.Size(newMem))
		v.mu.Lock()
		v.hw.DIMMs = hw.DIMMs
		v.mu.Unlock()
	}
	v.save()
	v.mu.Lock()
	v.cfg.CPUs, v.cfg.MemoryBytes = cpus, memoryBytes // the next boot has them too
	v.mu.Unlock()
	v.log.Info("hot-added", "cpus", newCPUs, "memory", api.Size(newMem))
	return hypervisor.HotAddResult{Hardware: hw, Guest: v.onlineInGuest(ctx, before, cpus, newCPUs, newMem)}, nil
}

// plugCPU adds one vCPU in the first free place of the topology.
func (v *vm) plugCPU(ctx context.Context, hw api.VMHardware) (api.HotCPU, error) {
	var slots []struct {
		Type    string         `json:"type"`
		Props   map[string]int `json:"props"`
		QOMPath string         `json:"qom-path"`
	}
	if err := v.query(ctx, "query-hotpluggable-cpus", &slots); err != nil {
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
	if err := v.command(ctx, "device_add", dev); err != nil {
		return api.HotCPU{}, err
	}
	return c, nil
}

// plugDIMM adds a DIMM of size bytes in slot i.
func (v *vm) plugDIMM(ctx context.Context, i int, size int64) error {
	if err := v.command(ctx, "object-add", map[string]any{"qom-type": "memory-backend-ram", "id": cmdline.DIMMBackend(i), "size": size}); err != nil {
		return err
	}
	if err := v.command(ctx, "device_add", map[string]any{"driver": "pc-dimm", "id": cmdline.DIMMID(i), "memdev": cmdline.DIMMBackend(i)}); err != nil {
		_ = v.command(context.WithoutCancel(ctx), "object-del", map[string]any{"id": cmdline.DIMMBackend(i)})
		return err
	}
	return nil
}

// guestView is what the guest had before a hot-add: its logical CPUs and
// memory blocks. nil: its agent does not answer.
type guestView struct {
	cpus   map[int]bool
	blocks map[uint64]bool
}

func (v *vm) guestView(ctx context.Context) *guestView {
	if v.guestInfo().State != hypervisor.GuestRunning {
		return nil
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := v.agent(gctx)
	if err != nil {
		return nil
	}
	cpus, err := c.VCPUs(gctx)
	if err != nil {
		return nil
	}
	blocks, err := c.MemoryBlocks(gctx)
	if err != nil {
		return nil
	}
	g := &guestView{cpus: map[int]bool{}, blocks: map[uint64]bool{}}
	for _, x := range cpus {
		g.cpus[x.LogicalID] = true
	}
	for _, b := range blocks {
		g.blocks[b.PhysIndex] = true
	}
	return g
}

// onlineInGuest waits for the guest to see the vCPUs and memory just
// added and brings online those it left offline, as a guest's udev rules
// would (a Linux guest without them leaves hot-added vCPUs and memory
// offline). It says what came of it.
func (v *vm) onlineInGuest(ctx context.Context, before *guestView, cpus, newCPUs int, newMem int64) string {
	if before == nil {
		return "the guest agent does not answer: the guest has the new hardware and must bring it online itself"
	}
	c, err := v.agent(ctx)
	if err != nil {
		return "the guest agent does not answer: " + err.Error()
	}
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
func waitGuestSees(ctx context.Context, c *qga.Client, before *guestView, cpus int, newMem, blockSize int64) ([]qga.VCPU, []qga.MemoryBlock, string) {
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
