package transfercmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
	"github.com/vdc-project/vdc/internal/testguest"
)

func NewImageCmd(g *cmdutil.Globals) *cobra.Command {
	d := &cmdutil.Noun[*api.Image]{
		Kind: api.KindImage, Singular: "image", Plural: "images", Use: "image",
		Short: "Manage images VMs are made from (vdc vm create --image NAME)",
		Columns: func(now time.Time) []cmdutil.Column[*api.Image] {
			return []cmdutil.Column[*api.Image]{
				{Header: "name", Value: func(i *api.Image) string { return i.Metadata.Name }},
				{Header: "type", Value: func(i *api.Image) string { return i.Spec.Type }},
				{Header: "phase", Value: func(i *api.Image) string { return i.Status.Phase }},
				{Header: "datastore", Value: func(i *api.Image) string { return i.Spec.Datastore.String() }},
				{Header: "size", Value: func(i *api.Image) string { return imageSize(i).String() }},
				{Header: "age", Value: func(i *api.Image) string { return cmdutil.Age(now, i.Metadata.Created) }},
			}
		},
		Info: func(v *cmdutil.InfoView, i *api.Image, now time.Time) {
			cmdutil.MetaInfo(v, &i.Metadata, now)
			v.Add("Type", i.Spec.Type)
			v.Add("Phase", i.Status.Phase)
			v.Add("Datastore", i.Spec.Datastore.String())
			v.Add("Description", i.Spec.Description)
			if i.Spec.Cmdline != "" {
				v.Add("Kernel command line", i.Spec.Cmdline)
			}
			if i.Status.Format != "" {
				v.Add("Format", i.Status.Format)
				v.Add("Virtual size", i.Status.VirtualSize.String())
			}
			var rows [][]string
			for _, f := range i.Status.Files {
				rows = append(rows, []string{f.Name, f.SizeBytes.String(), f.Path, f.SHA256})
			}
			v.Table("Files", []string{"file", "size", "path", "sha256"}, rows)
		},
	}
	return d.Command(g, newImageUploadCmd(g), newImageBuildTestCmd(g), newImageImportCmd(g))
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

func newImageUploadCmd(g *cmdutil.Globals) *cobra.Command {
	var u imageUpload
	cmd := &cobra.Command{
		Use:   "upload NAME (--kernel FILE --initrd FILE | --disk FILE)",
		Short: "Upload an image: a kernel and initrd, or a disk file (qcow2, raw, vmdk...)",
		Example: `  vdc image upload debian-12 --disk debian-12-generic-amd64.qcow2
  vdc image upload mykernel --kernel vmlinuz --initrd initrd.img --cmdline "console=ttyS0"`,
		Args: cmdutil.ExactArgs(1),
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

func (u *imageUpload) run(ctx context.Context, g *cmdutil.Globals) error {
	if _, _, err := u.request(); err != nil {
		return err
	}
	c, err := g.Client()
	if err != nil {
		return err
	}
	return u.runWith(ctx, g, c)
}

// runWith uploads through a given client.
func (u *imageUpload) runWith(ctx context.Context, g *cmdutil.Globals, c *client.Client) error {
	req, files, err := u.request()
	if err != nil {
		return err
	}
	img, err := c.CreateImageFromFiles(ctx, req, files, uploadProgress(g))
	if err != nil {
		return err
	}
	fmt.Fprintln(g.Stdout, cmdutil.Safe(fmt.Sprintf("image %s uploaded (%s, %s) to datastore %s", u.name, img.Spec.Type, imageSize(img), img.Spec.Datastore)))
	return nil
}

// uploadProgress shows uploads as progress bars on a terminal.
func uploadProgress(g *cmdutil.Globals) client.Progress {
	fd, ok := g.Stderr.(*os.File)
	if !ok || !term.IsTerminal(int(fd.Fd())) {
		return nil
	}
	return func(label string, body io.Reader, size int64) (io.Reader, func()) {
		bar := progressbar.DefaultBytes(size, label)
		r := progressbar.NewReader(body, bar)
		return &r, func() { _ = bar.Finish() }
	}
}

func newImageBuildTestCmd(g *cmdutil.Globals) *cobra.Command {
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
			// Where it goes first: a build takes a while to find out.
			c, err := g.Client()
			if err != nil {
				return fmt.Errorf("build the test guest: %w", err)
			}
			if _, err := c.Version(ctx); err != nil {
				return fmt.Errorf("build the test guest: the server at %s does not answer: %w", c.URL(), err)
			}
			out, err := os.MkdirTemp("", "vdc-testguest")
			if err != nil {
				return err
			}
			defer os.RemoveAll(out)
			if cache == "" {
				cache = filepath.Join(os.TempDir(), "vdc-testguest-cache")
			}
			fmt.Fprintln(g.Stderr, "building the test guest...")
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			res, err := testguest.Build(ctx, testguest.Options{OutDir: out, CacheDir: cache, Log: log})
			if err != nil {
				return fmt.Errorf("build the test guest: %w", err)
			}
			u := &imageUpload{name: name, datastore: datastore, kernel: res.Kernel, initrd: res.Initrd, cmdline: res.Cmdline,
				description: "vdc test guest: Linux " + res.KernelVersion + ", busybox, qemu-guest-agent"}
			return u.runWith(ctx, g, c)
		},
	}
	cmd.Flags().StringVar(&name, "name", "test", "image name")
	cmd.Flags().StringVar(&datastore, "datastore", "", "datastore to keep it on (default: the only shared one)")
	cmd.Flags().StringVar(&cache, "cache", "", "where downloaded kernel packages are kept between builds")
	return cmd
}

func newImageImportCmd(g *cmdutil.Globals) *cobra.Command {
	var req api.ImageImportRequest
	cmd := &cobra.Command{
		Use:   "import URL-or-FILE",
		Short: "Import a disk image (a qcow2 or raw cloud image) from a URL or a file",
		Long: `A host that reaches the image datastore fetches the image (an http(s) URL,
or a file in a datastore it reaches), checks it is a standalone qcow2 or raw
disk, and stores it as images/NAME/disk. A file that is in no datastore is
uploaded from this machine instead (as vdc image upload NAME --disk FILE):
the hosts read no file outside their datastores. Make VMs from it with
vdc vm create NAME --image IMAGE [--linked] [--cloud-init FILE --ssh-key KEY].`,
		Example: `  vdc image import https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2 --name debian-12
  vdc image import ./ubuntu-24.04.img --name ubuntu-24.04          # uploaded from here
  vdc image import /srv/vdc/datastore1/iso/ubuntu-24.04.img        # copied by a host`,
		Args: cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Source = args[0]
			if req.Name == "" {
				req.Name = imageNameFrom(req.Source)
			}
			ctx := cmd.Context()
			if local, err := uploadInstead(ctx, g, req.Source); err != nil {
				return fmt.Errorf("import image %s: %w", req.Name, err)
			} else if local != "" {
				return importByUpload(ctx, g, req, local)
			}
			return g.Apply(ctx, cmdutil.Change{
				What: "import image " + req.Name,
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.ImportImage(ctx, req) },
				Done: func(ctx context.Context, c *client.Client, t *api.Task) string {
					var st api.ImageStatus
					_ = json.Unmarshal(t.Result, &st)
					return fmt.Sprintf("image %s imported (%s, %s)", req.Name, st.Format, st.VirtualSize)
				},
			})
		},
	}
	cmd.Flags().StringVar(&req.Name, "name", "", "name of the image (default: from the file name)")
	cmd.Flags().StringVar(&req.Datastore, "datastore", "", "shared datastore to keep it on (default: the only one)")
	cmd.Flags().StringVar(&req.SHA256, "sha256", "", "expected SHA-256 of the file")
	cmd.Flags().StringVar(&req.Description, "description", "", "what the image is")
	cmdutil.AddAsync(cmd, g)
	return cmd
}

// uploadInstead says whether an image source is a file of this machine
// to upload (its absolute path), rather than a URL or a file in a
// datastore for a host to read ("").
func uploadInstead(ctx context.Context, g *cmdutil.Globals, src string) (string, error) {
	if u, err := url.Parse(src); err == nil && u.Scheme != "" && len(u.Scheme) > 1 {
		return "", nil // a URL: the server says which it takes
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return "", err
	}
	if fi, err := os.Stat(abs); err != nil || !fi.Mode().IsRegular() {
		return "", nil // not here: perhaps on the hosts; the server answers
	}
	c, err := g.Client()
	if err != nil {
		return "", err
	}
	dss, err := client.List[*api.Datastore](ctx, c, api.KindDatastore, nil)
	if err != nil {
		return "", err
	}
	for _, ds := range dss {
		if root := filepath.Clean(ds.Spec.Path); abs != root && api.PathWithin(root, abs) {
			return "", nil // the hosts read it from the datastore
		}
	}
	return abs, nil
}

// importByUpload imports a local file by uploading it, checking its
// digest as the host received it; a failed import keeps no image.
func importByUpload(ctx context.Context, g *cmdutil.Globals, req api.ImageImportRequest, file string) error {
	c, err := g.Client()
	if err != nil {
		return err
	}
	if g.Async {
		return fmt.Errorf("import image %s: %s is in no datastore, so it is uploaded, which --async cannot do; leave out --async", req.Name, file)
	}
	fmt.Fprintf(g.Stderr, "%s is in no datastore: uploading it\n", file)
	u := &imageUpload{name: req.Name, datastore: req.Datastore, description: req.Description, disk: file}
	creq, files, err := u.request()
	if err != nil {
		return err
	}
	if _, err := c.Create(ctx, api.KindImage, creq); err != nil {
		return fmt.Errorf("import image %s: %w", req.Name, err)
	}
	fail := func(err error) error {
		_, _ = c.Delete(context.WithoutCancel(ctx), api.KindImage, req.Name, nil)
		return fmt.Errorf("import image %s from %s: %w; the image was not kept", req.Name, file, err)
	}
	if err := c.UploadImageFileFrom(ctx, req.Name, "disk", files["disk"], uploadProgress(g)); err != nil {
		return fail(err)
	}
	img, err := client.Get[*api.Image](ctx, c, api.KindImage, req.Name)
	if err != nil {
		return fail(err)
	}
	f := imageFileOf(img, "disk")
	if f == nil {
		return fail(errors.New("the server kept no disk file"))
	}
	if req.SHA256 != "" && !strings.EqualFold(f.SHA256, req.SHA256) {
		return fail(fmt.Errorf("it has SHA-256 %s, not %s as expected", f.SHA256, req.SHA256))
	}
	// What a host would check on an import from a datastore file.
	switch img.Status.Format {
	case "qcow2":
	case "raw":
		if n := int64(f.SizeBytes); n < 1<<20 || n%512 != 0 {
			return fail(fmt.Errorf("it is not a disk image: as raw it would be %d bytes, not a whole number of 512-byte sectors of at least 1 MiB", n))
		}
	default:
		return fail(fmt.Errorf("it is a %s image; import qcow2 or raw images (convert others with vdc import disk)", cmdutil.Safe(img.Status.Format)))
	}
	fmt.Fprintln(g.Stdout, cmdutil.Safe(fmt.Sprintf("image %s imported (%s, %s), uploaded to datastore %s", req.Name, img.Status.Format, img.Status.VirtualSize, img.Spec.Datastore)))
	return nil
}

func imageFileOf(img *api.Image, name string) *api.ImageFile {
	for i := range img.Status.Files {
		if img.Status.Files[i].Name == name {
			return &img.Status.Files[i]
		}
	}
	return nil
}

// imageNameFrom makes an image name from a file name:
// ".../debian-12-genericcloud-amd64.qcow2" -> "debian-12-genericcloud-amd64".
func imageNameFrom(src string) string {
	base := src[strings.LastIndexAny(src, "/")+1:]
	if i := strings.IndexAny(base, "?#"); i >= 0 {
		base = base[:i]
	}
	for _, ext := range []string{".qcow2", ".img", ".raw"} {
		base = strings.TrimSuffix(base, ext)
	}
	if len(base) > api.MaxNameLength {
		base = base[:api.MaxNameLength]
	}
	return base
}
