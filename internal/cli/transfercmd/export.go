package transfercmd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
	"github.com/vdc-project/vdc/internal/ovf"
)

func jsonUnmarshalTask(t *api.Task, v any) error {
	if len(t.Result) == 0 {
		return errors.New("no result")
	}
	return json.Unmarshal(t.Result, v)
}

func NewExportCmd(g *cmdutil.Globals) *cobra.Command {
	var req api.ExportRequest
	var out string
	cmd := &cobra.Command{
		Use:   "export NAME [--format ova|ovf] [--out PATH]",
		Short: "Export a VM that is off as an OVF package (OVA or OVF folder) that VMware and VirtualBox import",
		Long: `Write a powered-off VM as an OVF package: an OVF 1.0 descriptor (2.0
with --ovf-version 2.0) in the form VMware ovftool and VirtualBox import
(vmx-10 hardware, LSI Logic SCSI and AHCI SATA controllers, E1000
adapters), its disks as streamOptimized VMDKs, and a SHA-256 manifest.
--format ova (default) writes one tar file; --format ovf a folder.`,
		Example: `  vdc export web1
  vdc export web1 --format ovf --out /srv/export/web1
  vdc export web1 --ovf-version 2.0 --out web1-ovf2.ova`,
		Args: cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if req.Format == "" {
				req.Format = api.ImportOVA
			}
			if req.Format != api.ImportOVA && req.Format != api.ImportOVF {
				return fmt.Errorf("--format must be ova or ovf, got %q", req.Format)
			}
			if out == "" {
				out = name
				if req.Format == api.ImportOVA {
					out += ".ova"
				}
			}
			if _, err := os.Stat(out); err == nil {
				return fmt.Errorf("export vm %s: %s already exists", name, out)
			}
			ctx := cmd.Context()
			c, err := g.Client()
			if err != nil {
				return err
			}
			t, err := c.Export(ctx, name, req)
			if err != nil {
				return fmt.Errorf("export vm %s: %w", name, err)
			}
			if t, err = g.WaitTask(ctx, c, t); err != nil {
				return fmt.Errorf("export vm %s: %w", name, err)
			}
			var res api.ExportResult
			if err := jsonUnmarshalTask(t, &res); err != nil {
				return fmt.Errorf("export vm %s: %w", name, err)
			}
			defer func() { _ = c.DeleteExport(context.WithoutCancel(ctx), res.ID) }()
			n, err := download(ctx, g, c, &res, out)
			if err != nil {
				return fmt.Errorf("export vm %s: %w", name, err)
			}
			fmt.Fprintf(g.Stdout, "exported vm %s to %s (OVF %s, %d files, %s; digests checked)\n", name, out, cmdutil.Safe(res.Version), len(res.Files), api.Size(n))
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Format, "format", "ova", "ova (one file) or ovf (a folder)")
	cmd.Flags().StringVar(&req.Version, "ovf-version", "1.0", "OVF version: 1.0 or 2.0")
	cmd.Flags().StringVar(&out, "out", "", "where to write it (default NAME.ova, or the folder NAME)")
	return cmd
}

// download fetches an export and checks each file's SHA-256.
func download(ctx context.Context, g *cmdutil.Globals, c *client.Client, res *api.ExportResult, out string) (int64, error) {
	var total int64
	for _, f := range res.Files {
		total += int64(f.Size)
	}
	var bar *progressbar.ProgressBar
	if fd, ok := g.Stderr.(*os.File); ok && term.IsTerminal(int(fd.Fd())) {
		bar = progressbar.DefaultBytes(total, "downloading "+filepath.Base(out))
		defer bar.Finish()
	}
	wrap := func(r io.Reader) io.Reader {
		if bar == nil {
			return r
		}
		pr := progressbar.NewReader(r, bar)
		return &pr
	}
	if res.Format == api.ImportOVA {
		body, _, err := c.DownloadExport(ctx, res.ID, "")
		if err != nil {
			return 0, err
		}
		defer body.Close()
		n, err := writeFile(out, wrap(body))
		if err != nil {
			return n, err
		}
		return n, verifyOVA(out, res)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return 0, err
	}
	var n int64
	for _, f := range res.Files {
		body, _, err := c.DownloadExport(ctx, res.ID, f.Name)
		if err != nil {
			return n, err
		}
		h := sha256.New()
		m, err := writeFile(filepath.Join(out, f.Name), io.TeeReader(wrap(body), h))
		body.Close()
		n += m
		if err != nil {
			return n, err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
			return n, fmt.Errorf("%s arrived damaged: SHA-256 %s, expected %s", f.Name, got, f.SHA256)
		}
	}
	return n, nil
}

func writeFile(p string, r io.Reader) (int64, error) {
	fh, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := io.CopyBuffer(fh, r, make([]byte, 1<<20))
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(p)
	}
	return n, err
}

// verifyOVA reads the downloaded OVA back as an importer would and checks
// its files against the export's digests.
func verifyOVA(p string, res *api.ExportResult) error {
	fh, err := os.Open(p)
	if err != nil {
		return err
	}
	defer fh.Close()
	pkg, err := ovf.ReadOVA(fh)
	if err != nil {
		return fmt.Errorf("the downloaded OVA does not read back: %w", err)
	}
	for _, f := range res.Files {
		pf := pkg.Files[f.Name]
		if pf == nil || pf.Digests["SHA256"] != f.SHA256 {
			return fmt.Errorf("%s in the downloaded OVA is missing or damaged", f.Name)
		}
	}
	return nil
}
