package vmcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

func newCloneCmd(g *cmdutil.Globals) *cobra.Command {
	var req api.CloneRequest
	var memory string
	cmd := &cobra.Command{
		Use:   "clone SRC NEW",
		Short: "Clone a VM: a full copy of its disks, or a linked clone (a thin overlay, made in constant time)",
		Long: `Make a new VM from SRC with new MAC addresses and a new identity (its
ID, which is also its SMBIOS UUID and cloud-init instance ID). A full clone
copies the disks (progress shown); a running VM is copied as it is at that
moment while it runs. --snapshot clones the VM as it was at a snapshot.
--linked makes the new disks thin overlays on frozen files (a snapshot's,
with --snapshot, or a template's): made at once whatever their size, they
read the base, which then cannot be deleted while the clone exists.`,
		Example: `  vdc vm clone web1 web2
  vdc vm clone web1 web-test --snapshot before-upgrade --linked
  vdc vm clone gold-image web3 --linked --host host-2
  vdc vm clone web1 web-dr --datastore dr-ds`,
		Args: cmdutil.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src := args[0]
			req.Name = args[1]
			if memory != "" {
				m, err := cmdutil.ParseSizeFlag("--memory", memory, api.MinVMMemory, api.MaxVMMemory)
				if err != nil {
					return err
				}
				req.Memory = m
			}
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: fmt.Sprintf("clone vm %s", src),
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.Clone(ctx, src, req) },
				Done: cloneDone(req.Name),
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&req.Linked, "linked", false, "a linked clone: thin overlays on the snapshot's or template's disks")
	f.StringVar(&req.Snapshot, "snapshot", "", "clone the VM as it was at this snapshot")
	f.StringVar(&req.Host, "host", "", "host of the new VM (default: placement picks one)")
	f.StringVar(&req.Datastore, "datastore", "", "datastore of the new disks (default: the source's)")
	f.StringVar(&req.Folder, "folder", "", "VM folder of the new VM, a path like /web (default: the source's)")
	f.IntVar(&req.CPUs, "cpus", 0, "virtual CPUs (default: the source's)")
	f.StringVar(&memory, "memory", "", "memory (default: the source's)")
	f.BoolVar(&req.PowerOn, "start", false, "power the new VM on")
	cmdutil.AddAsync(cmd, g)
	return cmd
}

func cloneDone(name string) func(ctx context.Context, c *client.Client, t *api.Task) string {
	return func(ctx context.Context, c *client.Client, t *api.Task) string {
		var res api.CloneResult
		_ = json.Unmarshal(t.Result, &res)
		kind := "full clone"
		if res.Linked {
			kind = "linked clone"
		}
		s := fmt.Sprintf("vm %s created (%s) in %s", name, kind, time.Duration(res.TookMs)*time.Millisecond)
		if res.CopiedBytes > 0 {
			s += fmt.Sprintf(", %s copied", res.CopiedBytes)
		}
		if vm, err := c.GetVM(ctx, name); err == nil {
			s += " on " + vm.Spec.Host.String()
		}
		return s
	}
}

func newMarkTemplateCmd(g *cmdutil.Globals) *cobra.Command {
	var undo bool
	cmd := &cobra.Command{
		Use:   "mark-template NAME",
		Short: "Make a powered-off VM a template: it no longer runs, and VMs are made from it",
		Example: `  vdc vm mark-template gold-debian
  vdc vm create web5 --from-template gold-debian --linked
  vdc vm mark-template gold-debian --undo`,
		Args: cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: "mark vm " + name + " a template",
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
					return c.MarkTemplate(ctx, name, !undo)
				},
				Done: func(context.Context, *client.Client, *api.Task) string {
					if undo {
						return "vm " + name + " is a VM again"
					}
					return "vm " + name + " is a template"
				},
			})
		},
	}
	cmd.Flags().BoolVar(&undo, "undo", false, "make a template a VM again (no linked clone may depend on it)")
	cmdutil.AddAsync(cmd, g)
	return cmd
}

func NewTemplateCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := cmdutil.Group(g, "template", "List templates (vdc vm mark-template; vdc vm create NEW --from-template T)")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List templates",
		Args:  cmdutil.ExactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			items, err := c.Templates(cmd.Context())
			if err != nil {
				return err
			}
			now := time.Now()
			cols := []cmdutil.Column[*api.VM]{
				{Header: "name", Value: func(vm *api.VM) string { return vm.Metadata.Name }},
				{Header: "cpus", Value: func(vm *api.VM) string { return fmt.Sprint(vm.Spec.CPUs) }},
				{Header: "memory", Value: func(vm *api.VM) string { return vm.Spec.MemoryBytes.String() }},
				{Header: "disks", Value: func(vm *api.VM) string { return cmdutil.SizeOrEmpty(storageOf(vm).CapacityBytes) }},
				{Header: "allocated", Value: func(vm *api.VM) string { return cmdutil.SizeOrEmpty(storageOf(vm).AllocatedBytes) }},
				{Header: "datastore", Value: func(vm *api.VM) string {
					if len(vm.Spec.Disks) == 0 {
						return ""
					}
					return vm.Spec.Disks[0].Datastore.String()
				}},
				{Header: "age", Value: func(vm *api.VM) string { return cmdutil.Age(now, vm.Metadata.Created) }},
			}
			return cmdutil.PrintList(g, items, cols)
		},
	}
	cmd.AddCommand(ls)
	return cmd
}

func storageOf(vm *api.VM) api.VMStorage {
	if vm.Status.Storage != nil {
		return *vm.Status.Storage
	}
	return api.VMStorage{}
}

func newDiskCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := cmdutil.Group(g, "disk", "Add, grow and remove a VM's disks, live while it runs")
	var add api.DiskAddRequest
	var size string
	addCmd := &cobra.Command{
		Use:   "add VM --size SIZE",
		Short: "Add a disk (hot-plugged into a running VM; thin unless --thick)",
		Example: `  vdc vm disk add web1 --size 20G
  vdc vm disk add db1 --size 100G --datastore fast-ssd --bus scsi --thick`,
		Args: cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm := args[0]
			s, err := cmdutil.ParseSizeFlag("--size", size, api.MinVMMemory, api.MaxDiskSize)
			if err != nil {
				return err
			}
			add.Size = s
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: "add a disk to vm " + vm,
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.AddDisk(ctx, vm, add) },
				Done: func(ctx context.Context, c *client.Client, t *api.Task) string {
					var name string
					_ = json.Unmarshal(t.Result, &name)
					return fmt.Sprintf("disk %s (%s) added to vm %s", name, add.Size, vm)
				},
			})
		},
	}
	addCmd.Flags().StringVar(&size, "size", "", "size of the disk, e.g. 20G (required)")
	addCmd.Flags().StringVar(&add.Datastore, "datastore", "", "datastore (default: the VM's first disk's)")
	addCmd.Flags().StringVar(&add.Bus, "bus", "", "virtio (default), scsi or sata (sata only while the VM is off)")
	addCmd.Flags().BoolVar(&add.Thick, "thick", false, "allocate the whole disk now (thick provisioning)")
	cmdutil.AddAsync(addCmd, g)

	var grow string
	resizeCmd := &cobra.Command{
		Use:     "resize VM DISK --size SIZE",
		Aliases: []string{"grow"},
		Short:   "Grow a disk (live while the VM runs: the guest sees the new size at once)",
		Example: "  vdc vm disk resize web1 disk1 --size 40G",
		Args:    cmdutil.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm, disk := args[0], args[1]
			s, err := cmdutil.ParseSizeFlag("--size", grow, api.MinVMMemory, api.MaxDiskSize)
			if err != nil {
				return err
			}
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: fmt.Sprintf("resize disk %s of vm %s", disk, vm),
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.ResizeDisk(ctx, vm, disk, s) },
				Done: func(context.Context, *client.Client, *api.Task) string {
					return fmt.Sprintf("disk %s of vm %s is now %s", disk, vm, s)
				},
			})
		},
	}
	resizeCmd.Flags().StringVar(&grow, "size", "", "new size, larger than the current one (required)")
	cmdutil.AddAsync(resizeCmd, g)

	rmCmd := &cobra.Command{
		Use:     "rm VM DISK",
		Aliases: []string{"remove"},
		Short:   "Remove a disk (unplugged from a running VM; its data is deleted, except what snapshots keep)",
		Example: "  vdc vm disk rm web1 disk1",
		Args:    cmdutil.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm, disk := args[0], args[1]
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: fmt.Sprintf("remove disk %s of vm %s", disk, vm),
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.RemoveDisk(ctx, vm, disk) },
				Done: func(context.Context, *client.Client, *api.Task) string {
					return fmt.Sprintf("disk %s removed from vm %s", disk, vm)
				},
			})
		},
	}
	cmdutil.AddAsync(rmCmd, g)
	cmd.AddCommand(addCmd, resizeCmd, rmCmd)
	return cmd
}

// cloudInitFlags are vm create's cloud-init flags.
type cloudInitFlags struct {
	userData string
	sshKeys  []string
	hostname string
}

func addCloudInitFlags(cmd *cobra.Command) *cloudInitFlags {
	f := &cloudInitFlags{}
	cmd.Flags().StringVar(&f.userData, "cloud-init", "", "attach a NoCloud seed with this user-data file (#cloud-config or script) for cloud images")
	cmd.Flags().StringArrayVar(&f.sshKeys, "ssh-key", nil, "authorize this SSH public key (a key, or a .pub file) for the image's default user (repeatable)")
	cmd.Flags().StringVar(&f.hostname, "hostname", "", "guest host name given by cloud-init (default: the VM's name)")
	return f
}

func (f *cloudInitFlags) build() (*api.CloudInit, error) {
	if f.userData == "" && len(f.sshKeys) == 0 && f.hostname == "" {
		return nil, nil
	}
	ci := &api.CloudInit{Hostname: f.hostname}
	if f.userData != "" {
		b, err := os.ReadFile(f.userData)
		if err != nil {
			return nil, fmt.Errorf("--cloud-init: %w", err)
		}
		ci.UserData = string(b)
	}
	for _, k := range f.sshKeys {
		if !strings.HasPrefix(k, "ssh-") && !strings.HasPrefix(k, "ecdsa-") && !strings.HasPrefix(k, "sk-") {
			b, err := os.ReadFile(k)
			if err != nil {
				return nil, fmt.Errorf("--ssh-key %s: not a public key, nor a file holding one: %w", k, err)
			}
			k = strings.TrimSpace(string(b))
		}
		ci.SSHKeys = append(ci.SSHKeys, k)
	}
	return ci, nil
}

// fromTemplate builds a create request for a clone of a template: the
// shape is the template's unless --cpus or --memory say otherwise.
func (f *vmCreateFlags) fromTemplate(req api.VMCreateRequest) (api.VMCreateRequest, error) {
	if f.image != "" || f.cdrom != "" || len(f.disks) > 0 || len(f.nics) > 0 || f.noNIC || f.cluster != "" {
		return req, fmt.Errorf("--from-template takes disks, NICs and image from the template: drop --image, --cdrom, --disk, --nic, --no-nic and --cluster")
	}
	req.FromTemplate = f.template
	req.CPUs, req.Memory = 0, 0
	if f.cmd != nil && f.cmd.Flags().Changed("cpus") {
		if err := checkCPUs(f.cpus); err != nil {
			return req, err
		}
		req.CPUs = f.cpus
	}
	if f.cmd != nil && f.cmd.Flags().Changed("memory") {
		m, err := cmdutil.ParseSizeFlag("--memory", f.memory, api.MinVMMemory, api.MaxVMMemory)
		if err != nil {
			return req, err
		}
		req.Memory = m
	}
	var err error
	req.Labels, err = f.meta.LabelMap()
	return req, err
}
