package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// Import of a 1 GiB OVA through vdc against what an operator would do by
// hand on the host (tar x, then qemu-img convert), and export likewise
// (qemu-img convert to a streamOptimized VMDK, then tar c):
//
//	VDC_BENCH=1 go test -count=1 -timeout 60m -run BenchOVF -v ./test/e2e
func TestBenchOVF(t *testing.T) {
	needBench(t)
	needQEMU(t)
	cl := newCluster(t)
	cl.qemu = true
	cl.inventoryN(1)
	dir := t.TempDir()
	raw := cl.datastoreFile("data.raw")
	// 1 GiB of incompressible data on a 2 GiB disk: the VMDK (and so the
	// OVA) is about 1 GiB.
	sh(t, "head -c 1G /dev/urandom > "+raw+" && truncate -s 2G "+raw)
	cl.vdc("vm", "create", "bsrc", "--memory", "128MiB", "--image", raw, "--disk", "0", "--no-nic")
	ova := filepath.Join(dir, "bsrc.ova")
	cl.vdc("export", "bsrc", "--out", ova)
	fi, _ := os.Stat(ova)
	t.Logf("OVA: %d MiB", fi.Size()>>20)
	ds := filepath.Join(cl.dir, "datastore1")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(ln)
	defer srv.Close()

	runs := 3
	if os.Getenv("VDC_BENCH_RUNS") == "1" {
		runs = 1
	}
	var base, upload, fetch, expBase, exp []time.Duration
	for i := 0; i < runs; i++ {
		work := filepath.Join(ds, fmt.Sprintf("manual%d", i))
		os.MkdirAll(work, 0o755)
		base = append(base, timed(t, func() {
			sh(t, fmt.Sprintf("cd %s && tar xf %s && qemu-img convert -O qcow2 bsrc-disk0.vmdk disk0.qcow2", work, ova))
		}))
		os.RemoveAll(work)
		sh(t, "sync")
		name := fmt.Sprintf("up%d", i)
		upload = append(upload, timed(t, func() { cl.vdc("import", "ova", ova, "--name", name) }))
		cl.vdc("vm", "delete", name)
		sh(t, "sync")
		name = fmt.Sprintf("url%d", i)
		fetch = append(fetch, timed(t, func() { cl.vdc("import", "ova", "http://"+ln.Addr().String()+"/bsrc.ova", "--name", name) }))
		cl.vdc("vm", "delete", name)
		sh(t, "sync")

		src := filepath.Join(ds, cl.vm("bsrc").Spec.Disks[0].Path)
		out := filepath.Join(dir, fmt.Sprintf("manual%d", i))
		os.MkdirAll(out, 0o755)
		os.WriteFile(filepath.Join(out, "bsrc.ovf"), []byte("<Envelope/>"), 0o644)
		expBase = append(expBase, timed(t, func() {
			sh(t, fmt.Sprintf("cd %s && qemu-img convert -U -O vmdk -o subformat=streamOptimized %s bsrc-disk0.vmdk && sha256sum bsrc.ovf bsrc-disk0.vmdk > bsrc.mf && tar cf ../manual%d.ova bsrc.ovf bsrc.mf bsrc-disk0.vmdk", out, src, i))
		}))
		os.RemoveAll(out)
		os.Remove(filepath.Join(dir, fmt.Sprintf("manual%d.ova", i)))
		sh(t, "sync")
		p := filepath.Join(dir, fmt.Sprintf("e%d.ova", i))
		exp = append(exp, timed(t, func() { cl.vdc("export", "bsrc", "--out", p) }))
		os.Remove(p)
		sh(t, "sync")
	}
	med := func(d []time.Duration) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	t.Logf("import, tar x + qemu-img convert: %v (median %v)", base, med(base))
	t.Logf("import, vdc import ova FILE (upload through the server): %v (median %v, ratio %.2f)", upload, med(upload), float64(med(upload))/float64(med(base)))
	t.Logf("import, vdc import ova URL (the host fetches it): %v (median %v, ratio %.2f)", fetch, med(fetch), float64(med(fetch))/float64(med(base)))
	t.Logf("export, qemu-img convert + sha256sum + tar c: %v (median %v)", expBase, med(expBase))
	t.Logf("export, vdc export (download through the server): %v (median %v, ratio %.2f)", exp, med(exp), float64(med(exp))/float64(med(expBase)))
}

func sh(t *testing.T, script string) {
	t.Helper()
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

func timed(t *testing.T, fn func()) time.Duration {
	start := time.Now()
	fn()
	return time.Since(start)
}
