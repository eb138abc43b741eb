package vmcmd

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

func NewVMCmd(g *cmdutil.Globals) *cobra.Command {
	d := &cmdutil.Noun[*api.VM]{
		Kind: api.KindVM, Singular: "vm", Title: "VM", Plural: "VMs", Use: "vm",
		Short:     "Manage virtual machines",
		Columns:   vmColumns,
		Info:      vmInfo,
		ListFlags: vmListFlags,
		Create:    vmCreateCmdFlags,
		CreateExample: `  vdc vm create web1 --cpus 2 --memory 1GiB --disk 10GiB --start
  vdc vm create db1 --cpus 4 --memory 8G --disk 20G --disk 200G,datastore=nfs1,bus=scsi --nic vm-network --nic dmz,model=e1000
  vdc vm create scratch --memory 512MiB --no-nic --host esx2
  vdc vm create t1 --memory 256MiB --image test --start
  vdc vm create deb --memory 2G --image /srv/vdc/datastore1/files/debian-12.qcow2 --linked --start
  vdc vm create inst --memory 2G --disk 20G --cdrom /srv/iso/debian-12.iso --vnc --start
  vdc vm create web5 --from-template gold-debian --linked --start --folder /web
  vdc vm create deb1 --memory 2G --image debian-12 --linked --cloud-init user-data.yaml --ssh-key ~/.ssh/id_ed25519.pub --start`,
		Created: vmCreated,
		Update:  vmUpdateFlags,
		UpdateExample: `  vdc vm update web1 --cpus 4 --memory 4GiB
  vdc vm update web1 --max-cpus 8 --max-memory 16GiB   # while off: turn on hot-add
  vdc vm update web1 --cpus 6 --memory 8GiB            # while on: hot-add, the guest brings them online
  vdc vm update web1 --vnc on
  vdc vm update web1 --name web-01 --label tier=web --label old=`,
		DeleteFlags: vmDeleteFlags,
	}
	cmd := d.Command(g, newExecCmd(g), newConsoleCmd(g), newMigrateCmd(g), newMoveCmd(g),
		newSnapshotCmd(g), newCloneCmd(g), newMarkTemplateCmd(g), newDiskCmd(g), newNICCmd(g))
	for _, p := range powerVerbs {
		cmd.AddCommand(newPowerCmd(g, p))
	}
	return cmd
}

// vmListFlags are the filters of vm ls.
func vmListFlags(cmd *cobra.Command) func() (url.Values, error) {
	host := cmd.Flags().String("host", "", "only the VMs of this host")
	cluster := cmd.Flags().String("cluster", "", "only the VMs of this cluster")
	power := cmd.Flags().String("power", "", "only the VMs in this power state: on, off, suspended or unknown")
	folder := cmd.Flags().String("folder", "", "only the VMs directly in this folder (a path like /web; / for the top level)")
	return func() (url.Values, error) {
		q := url.Values{}
		states := []string{api.PowerOn, api.PowerOff, api.PowerSuspended, api.PowerUnknown}
		if *power != "" && !slices.Contains(states, *power) {
			return nil, fmt.Errorf("--power must be one of %s, got %q", strings.Join(states, ", "), *power)
		}
		for k, v := range map[string]string{"host": *host, "cluster": *cluster, "power": *power, "folder": *folder} {
			if v != "" {
				q.Set(k, v)
			}
		}
		return q, nil
	}
}

// vmCreateCmdFlags defines the flags of vm create.
func vmCreateCmdFlags(cmd *cobra.Command) func(string) (any, error) {
	f := &vmCreateFlags{meta: cmdutil.AddMetaFlags(cmd, false, true)}
	fl := cmd.Flags()
	fl.IntVar(&f.cpus, "cpus", 1, "virtual CPUs")
	fl.StringVar(&f.memory, "memory", "1GiB", "memory, e.g. 512MiB, 2G")
	fl.StringArrayVar(&f.disks, "disk", nil, "add a disk: SIZE[,datastore=D][,bus=virtio|scsi|sata][,thick=true] (repeatable; thin unless thick; with --image the first is made from the image, SIZE 0 keeping its size)")
	fl.StringArrayVar(&f.nics, "nic", nil, "add a NIC: PORTGROUP[,mac=MAC][,model=MODEL] (repeatable; default: one on the datacenter's only port group)")
	fl.BoolVar(&f.noNIC, "no-nic", false, "create the VM without any NIC")
	fl.StringVar(&f.host, "host", "", "host to run on (default: placement picks one)")
	fl.StringVar(&f.cluster, "cluster", "", "cluster (default: the only one, or the host's)")
	fl.StringVar(&f.folder, "folder", "", "VM folder to put it in, a path like /web (default: the datacenter's top level)")
	fl.BoolVar(&f.start, "start", false, "power the VM on once it is created")
	fl.StringVar(&f.image, "image", "", "make the VM from an image: a registered one (e.g. test), or the absolute path of a disk file (qcow2, raw...) in a datastore (upload others with vdc image import FILE)")
	fl.BoolVar(&f.linked, "linked", false, "with a disk --image: a thin overlay on the image instead of a copy")
	fl.StringVar(&f.cdrom, "cdrom", "", "attach this ISO file (absolute path of a file in a datastore) as a CD-ROM and boot from it")
	fl.BoolVar(&f.vnc, "vnc", false, "give the VM a VNC display (reached through the server: vdc vm console NAME --vnc)")
	fl.IntVar(&f.maxCPUs, "max-cpus", 0, "CPU hot-add: the running VM can grow to this many vCPUs (vdc vm update --cpus); 0: off")
	fl.StringVar(&f.maxMemory, "max-memory", "", "memory hot-add: the running VM can grow to this much memory, in steps of 128 MiB; default off")
	fl.StringVar(&f.haPriority, "ha-priority", "", "HA restart priority: high, medium (default), low or disabled")
	fl.StringVar(&f.template, "from-template", "", "make the VM from a template (with --linked: a linked clone); its shape is the template's unless --cpus/--memory are given")
	f.cloudInit = addCloudInitFlags(cmd)
	f.cmd = cmd
	return func(name string) (any, error) { return f.request(name) }
}

// vmCreated says what vm create did; with --from-template it made a clone.
func vmCreated(ctx context.Context, c *client.Client, t *api.Task, name string) string {
	if t.Op == "vm.clone" {
		return cloneDone(name)(ctx, c, t)
	}
	vm, ok := cmdutil.ReadTarget[*api.VM](ctx, c, t)
	if !ok {
		return fmt.Sprintf("vm %s created", name)
	}
	s := fmt.Sprintf("vm %s created on %s", vm.Metadata.Name, vm.Spec.Host)
	if vm.Status.PowerState == api.PowerOn {
		s += " and powered on"
	}
	return s
}

// vmUpdateFlags are the flags of vm update.
func vmUpdateFlags(cmd *cobra.Command) func() (any, error) {
	m := cmdutil.AddMetaFlags(cmd, true, true)
	cpus := cmd.Flags().Int("cpus", 0, "virtual CPUs; while the VM runs, added up to --max-cpus (hot-add)")
	memory := cmd.Flags().String("memory", "", "memory, e.g. 2GiB; while the VM runs, added up to --max-memory in steps of 128 MiB (hot-add)")
	maxCPUs := cmd.Flags().Int("max-cpus", 0, "CPU hot-add: how many vCPUs the VM can grow to while it runs, 0 for off (while it is off)")
	maxMemory := cmd.Flags().String("max-memory", "", "memory hot-add: how much memory the VM can grow to while it runs, 0 for off (while it is off)")
	vnc := cmd.Flags().String("vnc", "", "VNC display, on or off (a running VM gets it at its next power-on)")
	prio := cmd.Flags().String("ha-priority", "", "HA restart priority: high, medium, low or disabled")
	return func() (any, error) {
		mc, err := m.Change("vm")
		if err != nil {
			return nil, err
		}
		req := api.VMUpdateRequest{Name: mc.Name, Description: mc.Description, Labels: mc.Labels, HAPriority: cmdutil.Changed(cmd, "ha-priority", *prio)}
		if cmd.Flags().Changed("cpus") {
			if err := checkCPUs(*cpus); err != nil {
				return nil, err
			}
			req.CPUs = cpus
		}
		if cmd.Flags().Changed("memory") {
			mem, err := cmdutil.ParseSizeFlag("--memory", *memory, api.MinVMMemory, api.MaxVMMemory)
			if err != nil {
				return nil, err
			}
			req.Memory = &mem
		}
		if cmd.Flags().Changed("max-cpus") || cmd.Flags().Changed("max-memory") {
			mc, mm, err := hotAddFlags(*maxCPUs, *maxMemory)
			if err != nil {
				return nil, err
			}
			if cmd.Flags().Changed("max-cpus") {
				req.MaxCPUs = &mc
			}
			if cmd.Flags().Changed("max-memory") {
				req.MaxMemory = &mm
			}
		}
		if cmd.Flags().Changed("vnc") {
			on, err := cmdutil.ParseOnOff("vnc", *vnc)
			if err != nil {
				return nil, err
			}
			req.VNC = &on
		}
		return req, nil
	}
}

// vmDeleteFlags are the flags of vm delete.
func vmDeleteFlags(cmd *cobra.Command) func() url.Values {
	force := cmd.Flags().Bool("force", false, "delete a VM that is not off: power it off first")
	return func() url.Values {
		if *force {
			return url.Values{"force": {"true"}}
		}
		return nil
	}
}

// vmCreateFlags are the flags of vm create.
type vmCreateFlags struct {
	meta          *cmdutil.MetaFlags
	cpus          int
	memory        string
	disks, nics   []string
	noNIC         bool
	host, cluster string
	folder        string
	start         bool
	image, cdrom  string
	linked, vnc   bool
	maxCPUs       int
	maxMemory     string
	haPriority    string
	template      string
	cloudInit     *cloudInitFlags
	cmd           *cobra.Command
}

// request checks the flags and builds the create request. Bounds come
// from package api, so the CLI and the server agree on them.
func (f *vmCreateFlags) request(name string) (api.VMCreateRequest, error) {
	req := api.VMCreateRequest{Name: name, Host: f.host, Cluster: f.cluster, CPUs: f.cpus,
		Description: f.meta.Description, PowerOn: f.start, Image: f.image, Linked: f.linked, CDROM: f.cdrom, VNC: f.vnc, HAPriority: f.haPriority,
		Folder: f.folder}
	var err error
	if f.cloudInit != nil {
		if req.CloudInit, err = f.cloudInit.build(); err != nil {
			return req, err
		}
	}
	if f.template != "" {
		return f.fromTemplate(req)
	}
	if f.linked && f.image == "" {
		return req, fmt.Errorf("--linked needs --image or --from-template")
	}
	if err := checkCPUs(f.cpus); err != nil {
		return req, err
	}
	if req.Memory, err = cmdutil.ParseSizeFlag("--memory", f.memory, api.MinVMMemory, api.MaxVMMemory); err != nil {
		return req, err
	}
	if req.MaxCPUs, req.MaxMemory, err = hotAddFlags(f.maxCPUs, f.maxMemory); err != nil {
		return req, err
	}
	for i, s := range f.disks {
		d, err := parseDisk(s)
		if err != nil {
			return req, err
		}
		if d.Size == 0 && (i > 0 || f.image == "") {
			return req, fmt.Errorf("--disk %q: a size of 0 only means \"the image's size\", for the first disk with --image", s)
		}
		req.Disks = append(req.Disks, d)
	}
	// No --nic leaves NICs nil (JSON null): the server then gives the VM one
	// NIC on the datacenter's only port group. --no-nic sends [] for none.
	if f.noNIC {
		if len(f.nics) > 0 {
			return req, fmt.Errorf("--nic and --no-nic contradict each other: give one")
		}
		req.NICs = []api.NICRequest{}
	}
	for _, s := range f.nics {
		n, err := parseNIC("--nic", s)
		if err != nil {
			return req, err
		}
		req.NICs = append(req.NICs, n)
	}
	req.Labels, err = f.meta.LabelMap()
	return req, err
}

// hotAddFlags reads --max-cpus and --max-memory (0: not given, or off).
func hotAddFlags(maxCPUs int, maxMemory string) (int, api.Size, error) {
	if maxCPUs < 0 || maxCPUs > api.MaxVMCPUs {
		return 0, 0, fmt.Errorf("--max-cpus must be between 0 (no CPU hot-add) and %d, got %d", api.MaxVMCPUs, maxCPUs)
	}
	var mem api.Size
	if maxMemory != "" && maxMemory != "0" {
		var err error
		if mem, err = cmdutil.ParseSizeFlag("--max-memory", maxMemory, api.MinVMMemory, api.MaxVMMemory); err != nil {
			return 0, 0, err
		}
	}
	return maxCPUs, mem, nil
}

func checkCPUs(n int) error {
	if n < 1 || n > api.MaxVMCPUs {
		return fmt.Errorf("--cpus must be between 1 and %d, got %d", api.MaxVMCPUs, n)
	}
	return nil
}

// parseDisk reads SIZE[,datastore=D][,bus=virtio|scsi|sata].
func parseDisk(spec string) (api.DiskRequest, error) {
	var d api.DiskRequest
	size, opts, err := cmdutil.SplitSpec("--disk", "size", spec, "datastore", "bus", "thick")
	if err != nil {
		return d, err
	}
	// 0 is allowed here: with --image, the first disk takes the image's size.
	if d.Size, err = cmdutil.ParseSizeFlag(fmt.Sprintf("--disk %q", spec), size, 0, api.MaxDiskSize); err != nil {
		return d, err
	}
	d.Datastore, d.Bus = opts["datastore"], opts["bus"]
	switch opts["thick"] {
	case "", "false":
	case "true":
		d.Thick = true
	default:
		return d, fmt.Errorf("--disk %q: thick must be true or false, got %q", spec, opts["thick"])
	}
	if buses := []string{api.BusVirtio, api.BusSCSI, api.BusSATA}; d.Bus != "" && !slices.Contains(buses, d.Bus) {
		return d, fmt.Errorf("--disk %q: bus must be one of %s, got %q", spec, strings.Join(buses, ", "), d.Bus)
	}
	return d, nil
}

// parseNIC reads PORTGROUP[,mac=MAC][,model=MODEL]; what names it in
// errors (--nic, PORTGROUP).
func parseNIC(what, spec string) (api.NICRequest, error) {
	var n api.NICRequest
	pg, opts, err := cmdutil.SplitSpec(what, "port group", spec, "mac", "model")
	if err != nil {
		return n, err
	}
	n.PortGroup, n.MAC, n.Model = pg, opts["mac"], opts["model"]
	if n.MAC != "" {
		if hw, err := net.ParseMAC(n.MAC); err != nil || len(hw) != 6 {
			return n, fmt.Errorf("%s %q: mac %q is not a MAC address like 52:54:00:12:34:56", what, spec, n.MAC)
		}
	}
	switch n.Model {
	case "", api.NICVirtio, api.NICE1000, api.NICRTL8139:
	default:
		return n, fmt.Errorf("%s %q: model must be virtio, e1000 or rtl8139, got %q", what, spec, n.Model)
	}
	return n, nil
}

// powerVerb is one of vm start|stop|reset|suspend|resume.
type powerVerb struct {
	action, past, short string
}

var powerVerbs = []powerVerb{
	{api.ActionStart, "started", "Power a VM on"},
	{api.ActionStop, "stopped", "Shut a VM down: ask the guest, then power off after --timeout"},
	{api.ActionReset, "reset", "Reset a VM, like its reset button"},
	{api.ActionSuspend, "suspended", "Suspend a VM: pause it and keep its memory"},
	{api.ActionResume, "resumed", "Resume a suspended VM"},
}

func newPowerCmd(g *cmdutil.Globals, p powerVerb) *cobra.Command {
	cmd := &cobra.Command{
		Use:     p.action + " NAME",
		Short:   p.short,
		Example: fmt.Sprintf("  vdc vm %s web1", p.action),
		Args:    cmdutil.ExactArgs(1),
	}
	var force bool
	timeout := api.DefaultStopTimeout
	if p.action == api.ActionStop {
		cmd.Flags().BoolVar(&force, "force", false, "power off at once, without asking the guest")
		cmd.Flags().DurationVar(&timeout, "timeout", api.DefaultStopTimeout, "how long the guest has to shut down before it is powered off")
		cmd.Example += "\n  vdc vm stop web1 --timeout 5m\n  vdc vm stop web1 --force"
	}
	cmdutil.AddAsync(cmd, g)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		req := api.PowerRequest{Action: p.action, Force: force}
		if p.action == api.ActionStop {
			secs, err := stopTimeout(timeout, force, cmd.Flags().Changed("timeout"))
			if err != nil {
				return err
			}
			req.TimeoutSeconds = secs
		}
		return g.Apply(cmd.Context(), cmdutil.Change{
			What: fmt.Sprintf("%s vm %s", p.action, name),
			Call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.Power(ctx, name, req) },
			Done: func(ctx context.Context, c *client.Client, t *api.Task) string {
				if p.action == api.ActionStart {
					if vm, ok := cmdutil.ReadTarget[*api.VM](ctx, c, t); ok {
						return fmt.Sprintf("vm %s started on %s", name, vm.Spec.Host)
					}
				}
				return fmt.Sprintf("vm %s %s", name, p.past)
			},
		})
	}
	return cmd
}

// stopTimeout turns --timeout into whole seconds, rounded up so that a
// short timeout is never 0 (which the server reads as the default).
func stopTimeout(d time.Duration, force, given bool) (int, error) {
	switch {
	case force && given:
		return 0, fmt.Errorf("--timeout is for a graceful stop; --force powers off at once")
	case force:
		return 0, nil
	case d <= 0:
		return 0, fmt.Errorf("--timeout must be above 0, got %s", d)
	}
	return int(math.Ceil(d.Seconds())), nil
}

func vmColumns(now time.Time) []cmdutil.Column[*api.VM] {
	return []cmdutil.Column[*api.VM]{
		{Header: "name", Value: func(vm *api.VM) string { return vm.Metadata.Name }},
		{Header: "power", Value: vmPower},
		{Header: "host", Value: func(vm *api.VM) string { return vm.Spec.Host.String() }},
		{Header: "folder", Value: vmFolder},
		{Header: "cpus", Value: func(vm *api.VM) string { return strconv.Itoa(vm.Spec.CPUs) }},
		{Header: "memory", Value: func(vm *api.VM) string { return vm.Spec.MemoryBytes.String() }},
		{Header: "disks", Value: func(vm *api.VM) string {
			var total api.Size
			for _, d := range vm.Spec.Disks {
				total += d.SizeBytes
			}
			return cmdutil.SizeOrEmpty(total)
		}},
		{Header: "age", Value: func(vm *api.VM) string { return cmdutil.Age(now, vm.Metadata.Created) }},
		{Header: "message", Value: func(vm *api.VM) string { return cmdutil.Truncate(vm.Status.Message, 60) }, Optional: true},
	}
}

// vmFolder is the path of the VM's folder, "/" at the top level.
func vmFolder(vm *api.VM) string {
	if vm.Spec.Folder.IsZero() {
		return "/"
	}
	return vm.Spec.Folder.String()
}

// vmPower is the power state, with the last known one when it is unknown
// and the phase while the VM is being created or deleted. A template has
// none to speak of (it never runs): it shows as one.
func vmPower(vm *api.VM) string {
	var parts []string
	if vm.Spec.Template && vm.Status.PowerState == api.PowerOff {
		parts = append(parts, "template")
	} else if p := vm.Status.PowerState; p != "" {
		if last := vm.Status.LastKnownPowerState; p == api.PowerUnknown && last != "" {
			p += " (was " + last + ")"
		}
		parts = append(parts, p)
	}
	if ph := vm.Status.Phase; ph != "" && ph != api.PhaseReady {
		parts = append(parts, ph)
	}
	return strings.Join(parts, ", ")
}

func vmInfo(v *cmdutil.InfoView, vm *api.VM, now time.Time) {
	cmdutil.MetaInfo(v, &vm.Metadata, now)
	vmInfoState(v, vm, now)
	vmInfoGuest(v, vm, now)
	vmInfoStorage(v, vm)
	vmInfoDevices(v, vm)
}

// vmInfoState is the placement, power and shape part of vm info.
func vmInfoState(v *cmdutil.InfoView, vm *api.VM, now time.Time) {
	v.Add("Description", vm.Spec.Description)
	v.Add("Cluster", vm.Spec.Cluster.String())
	v.Add("Host", vm.Spec.Host.String())
	v.Add("Folder", vmFolder(vm))
	power := vmPower(vm)
	if since := cmdutil.Age(now, vm.Status.PowerChanged); since != "" {
		power += ", since " + since
	}
	v.Add("Power", power)
	v.Add("Phase", vm.Status.Phase)
	v.Add("Message", vm.Status.Message)
	cpus, mem := strconv.Itoa(vm.Spec.CPUs), vm.Spec.MemoryBytes.String()
	if vm.Spec.MaxCPUs > 0 {
		cpus += fmt.Sprintf(" (hot-add up to %d)", vm.Spec.MaxCPUs)
	}
	if vm.Spec.MaxMemoryBytes > 0 {
		mem += fmt.Sprintf(" (hot-add up to %s)", vm.Spec.MaxMemoryBytes)
	}
	v.Add("CPUs", cpus)
	v.Add("Memory", mem)
	ha := api.HAPriorityOf(vm)
	if n := len(vm.Status.HAResets); n > 0 {
		ha += fmt.Sprintf("; reset by VM monitoring %d time(s), last %s", n, cmdutil.Age(now, vm.Status.HAResets[n-1]))
	}
	v.Add("HA priority", ha)
	if vm.Spec.Image.ID != "" {
		v.Add("Image", vm.Spec.Image.String())
	}
	if vm.Spec.CDROM != "" {
		v.Add("CD-ROM", vm.Spec.CDROM)
	}
	v.Add("VNC", vncInfo(vm))
}

// vmInfoGuest is the guest agent part of vm info, and whether the VM is a template.
func vmInfoGuest(v *cmdutil.InfoView, vm *api.VM, now time.Time) {
	if g := vm.Status.Guest; g != nil {
		state := g.State
		if seen := cmdutil.Age(now, g.LastSeen); seen != "" {
			state += ", last answered " + seen
		}
		v.Add("Guest agent", state)
		v.Add("Guest OS", strings.TrimSpace(g.OS+" "+g.Kernel))
		v.Add("Guest hostname", g.Hostname)
		v.Add("Guest IPs", strings.Join(g.IPAddresses, ", "))
	}
	if vm.Spec.Template {
		v.Add("Template", "yes (vdc vm create NEW --from-template "+vm.Metadata.Name+")")
	}
}

// vmInfoStorage is the storage, snapshots and cloud-init part of vm info.
func vmInfoStorage(v *cmdutil.InfoView, vm *api.VM) {
	if st := vm.Status.Storage; st != nil {
		v.Add("Storage", fmt.Sprintf("%s capacity, %s provisioned, %s allocated", st.CapacityBytes, st.ProvisionedBytes, st.AllocatedBytes))
	}
	if n := len(vm.Spec.Snapshots); n > 0 {
		cur := "-"
		for _, sn := range vm.Spec.Snapshots {
			if sn.ID == vm.Spec.CurrentSnapshotID && !sn.Hidden {
				cur = sn.Name
			}
		}
		v.Add("Snapshots", fmt.Sprintf("%d (current: %s; vdc vm snapshot ls %s)", n, cur, vm.Metadata.Name))
	}
	if ci := vm.Spec.CloudInit; ci != nil {
		v.Add("Cloud-init", fmt.Sprintf("NoCloud seed: %d bytes of user-data, %d SSH keys", len(ci.UserData), len(ci.SSHKeys)))
	}
}

// vmInfoDevices is the tables of disks and NICs of vm info.
func vmInfoDevices(v *cmdutil.InfoView, vm *api.VM) {
	allocated := map[string]api.Size{}
	for _, d := range vm.Status.Disks {
		allocated[d.Name] = d.AllocatedBytes + d.SnapshotBytes
	}
	var disks, nics [][]string
	for _, d := range vm.Spec.Disks {
		alloc := "-"
		if a, ok := allocated[d.Name]; ok {
			alloc = a.String()
		}
		from := "-"
		if d.Source != "" {
			from = d.Source
			if d.Linked {
				from += " (linked)"
			}
		}
		kind := "thin"
		if d.Thick {
			kind = "thick"
		}
		disks = append(disks, []string{d.Name, d.SizeBytes.String(), alloc, kind, d.Datastore.String(), d.Bus, d.Path, from})
	}
	for _, n := range nicViews(vm) {
		nics = append(nics, []string{n.Name, n.PortGroup, n.MAC, n.Model, orDash(n.IPv4), tapCell(n), linkState(n.LinkDown)})
	}
	v.Table("Disks", []string{"name", "capacity", "allocated", "type", "datastore", "bus", "path", "from"}, disks)
	v.Table("NICs", []string{"name", "port group", "mac", "model", "ipv4", "tap", "link"}, nics)
}

// vncInfo says whether the VM has a display and how to reach it; a
// change made while it runs shows until its next power-on.
func vncInfo(vm *api.VM) string {
	has, running := vm.Status.VNC != "", holdsPower(vm)
	switch {
	case has && vm.Spec.VNC:
		return fmt.Sprintf("on, through the server: vdc vm console %s --vnc", vm.Metadata.Name)
	case has:
		return fmt.Sprintf("on until the next power-on (then off): vdc vm console %s --vnc", vm.Metadata.Name)
	case vm.Spec.VNC && running:
		return "off until the next power-on (then on)"
	case vm.Spec.VNC:
		return "on at power-on"
	}
	return ""
}

func holdsPower(vm *api.VM) bool {
	return vm.Status.PowerState == api.PowerOn || vm.Status.PowerState == api.PowerSuspended
}
