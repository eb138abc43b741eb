package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/testguest"
)

func newImageCmd(g *globals) *cobra.Command {
	d := &nounDef[*api.Image]{
		kind: api.KindImage, singular: "image", plural: "images", use: "image",
		short: "Manage images VMs are made from (vdc vm create --image NAME)",
		columns: func(now time.Time) []column[*api.Image] {
			return []column[*api.Image]{
				{header: "name", value: func(i *api.Image) string { return i.Metadata.Name }},
				{header: "type", value: func(i *api.Image) string { return i.Spec.Type }},
				{header: "phase", value: func(i *api.Image) string { return i.Status.Phase }},
				{header: "datastore", value: func(i *api.Image) string { return i.Spec.Datastore.String() }},
				{header: "size", value: func(i *api.Image) string { return imageSize(i).String() }},
				{header: "age", value: func(i *api.Image) string { return age(now, i.Metadata.Created) }},
			}
		},
		info: func(v *infoView, i *api.Image, now time.Time) {
			metaInfo(v, &i.Metadata, now)
			v.add("Type", i.Spec.Type)
			v.add("Phase", i.Status.Phase)
			v.add("Datastore", i.Spec.Datastore.String())
			v.add("Description", i.Spec.Description)
			if i.Spec.Cmdline != "" {
				v.add("Kernel command line", i.Spec.Cmdline)
			}
			if i.Status.Format != "" {
				v.add("Format", i.Status.Format)
				v.add("Virtual size", i.Status.VirtualSize.String())
			}
			var rows [][]string
			for _, f := range i.Status.Files {
				rows = append(rows, []string{f.Name, f.SizeBytes.String(), f.Path, f.SHA256})
			}
			v.table("Files", []string{"file", "size", "path", "sha256"}, rows)
		},
	}
	return d.command(g, newImageUploadCmd(g), newImageBuildTestCmd(g), newImageImportCmd(g))
}

func imageSize(i *api.Image) api.Size {
	var n api.Size
	for _, f := range i.Status.Files {
		n += f.SizeBytes
	}
	return n
}

type imageUpload struct {
	name, datastore, description, cmdline string
	kernel, initrd, disk                  string
}

func newImageUploadCmd(g *globals) *cobra.Command {
	var u imageUpload
	cmd := &cobra.Command{
		Use:   "upload NAME (--kernel FILE --initrd FILE | --disk FILE)",
		Short: "Upload an image: a kernel and initrd, or a disk file (qcow2, raw, vmdk...)",
		Example: `  vdc image upload debian-12 --disk debian-12-generic-amd64.qcow2
  vdc image upload mykernel --kernel vmlinuz --initrd initrd.img --cmdline "console=ttyS0"`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u.name = args[0]
			return u.run(cmd.Context(), g)
		},
	}
	cmd.Flags().StringVar(&u.kernel, "kernel", "", "kernel file (a kernel image)")
	cmd.Flags().StringVar(&u.initrd, "initrd", "", "initrd file (a kernel image)")
	cmd.Flags().StringVar(&u.cmdline, "cmdline", "console=ttyS0", "kernel command line (a kernel image)")
	cmd.Flags().StringVar(&u.disk, "disk", "", "disk file (a disk image)")
	cmd.Flags().StringVar(&u.datastore, "datastore", "", "datastore to keep it on (default: the only shared one)")
	cmd.Flags().StringVar(&u.description, "description", "", "what the image is")
	return cmd
}

// request checks the flags and says which files go up.
func (u *imageUpload) request() (api.ImageCreateRequest, map[string]string, error) {
	req := api.ImageCreateRequest{Name: u.name, Datastore: u.datastore, Description: u.description}
	files := map[string]string{}
	switch {
	case u.disk != "" && u.kernel == "" && u.initrd == "":
		req.Type, files["disk"] = api.ImageDisk, u.disk
	case u.disk == "" && u.kernel != "" && u.initrd != "":
		req.Type, req.Cmdline = api.ImageKernel, u.cmdline
		files["kernel"], files["initrd"] = u.kernel, u.initrd
	default:
		return req, nil, errors.New("give either --disk, or both --kernel and --initrd")
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			return req, nil, fmt.Errorf("upload image %s: %w", u.name, err)
		}
	}
	return req, files, nil
}

func (u *imageUpload) run(ctx context.Context, g *globals) error {
	if _, _, err := u.request(); err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	return u.runWith(ctx, g, c)
}

// runWith uploads through a given client.
func (u *imageUpload) runWith(ctx context.Context, g *globals, c *client.Client) error {
	req, files, err := u.request()
	if err != nil {
		return err
	}
	if _, err := c.Create(ctx, api.KindImage, req); err != nil {
		return fmt.Errorf("create image %s: %w", u.name, err)
	}
	for _, name := range api.ImageFiles(req.Type) {
		if err := uploadFile(ctx, g, c, u.name, name, files[name]); err != nil {
			return err
		}
	}
	img, err := client.Get[*api.Image](ctx, c, api.KindImage, u.name)
	if err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, safe(fmt.Sprintf("image %s uploaded (%s, %s) to datastore %s", u.name, img.Spec.Type, imageSize(img), img.Spec.Datastore)))
	return nil
}

// uploadFile sends one file, with a progress bar on a terminal.
func uploadFile(ctx context.Context, g *globals, c *client.Client, image, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("upload %s of image %s: %w", name, image, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	var body io.Reader = f
	if fd, ok := g.stderr.(*os.File); ok && term.IsTerminal(int(fd.Fd())) {
		bar := progressbar.DefaultBytes(fi.Size(), fmt.Sprintf("%s %s", image, name))
		r := progressbar.NewReader(f, bar)
		body = &r
		defer bar.Finish()
	}
	if _, err := c.UploadImageFile(ctx, image, name, body, fi.Size()); err != nil {
		return fmt.Errorf("upload %s of image %s: %w", name, image, err)
	}
	return nil
}

func newImageBuildTestCmd(g *globals) *cobra.Command {
	var name, datastore, cache string
	cmd := &cobra.Command{
		Use:   "build-test",
		Short: "Build the tiny test guest (Debian kernel, busybox, qemu-guest-agent) and upload it as an image",
		Long: `Build a tiny bootable Linux guest: a Debian kernel (this machine's, or one
fetched with apt-get download), a busybox initramfs that loads the virtio
modules, and the real qemu-guest-agent with its libraries (from this
machine's qemu-guest-agent package). It boots in seconds even without KVM.
It is uploaded as the kernel image NAME (default "test"):

  vdc vm create t1 --memory 256MiB --image test --start`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			out, err := os.MkdirTemp("", "vdc-testguest")
			if err != nil {
				return err
			}
			defer os.RemoveAll(out)
			if cache == "" {
				cache = filepath.Join(os.TempDir(), "vdc-testguest-cache")
			}
			fmt.Fprintln(g.stderr, "building the test guest...")
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			res, err := testguest.Build(ctx, testguest.Options{OutDir: out, CacheDir: cache, Log: log})
			if err != nil {
				return fmt.Errorf("build the test guest: %w", err)
			}
			u := &imageUpload{name: name, datastore: datastore, kernel: res.Kernel, initrd: res.Initrd, cmdline: res.Cmdline,
				description: "vdc test guest: Linux " + res.KernelVersion + ", busybox, qemu-guest-agent"}
			return u.run(ctx, g)
		},
	}
	cmd.Flags().StringVar(&name, "name", "test", "image name")
	cmd.Flags().StringVar(&datastore, "datastore", "", "datastore to keep it on (default: the only shared one)")
	cmd.Flags().StringVar(&cache, "cache", "", "where downloaded kernel packages are kept between builds")
	return cmd
}
