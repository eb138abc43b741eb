package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor/qemu"
	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/qga"
	"github.com/vdc-project/vdc/internal/qmp"
	"github.com/vdc-project/vdc/internal/testguest"
)

// plainMigrate starts the test guest and a receiving QEMU with bare
// command lines and migrates between them over loopback.
func plainMigrate(ctx context.Context, guest testguest.Result, accel string, mc MigrateCase, dir, tlsDir string) (MigrateTimes, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return MigrateTimes{}, err
	}
	stop, err := startPlainPair(guest, accel, mc, dir)
	defer stop()
	if err != nil {
		return MigrateTimes{}, err
	}
	// The guest is up when its agent answers.
	ga, err := dialGuestAgent(ctx, filepath.Join(dir, "src-qga.sock"), 3*time.Minute)
	if err != nil {
		return MigrateTimes{}, err
	}
	defer ga.Close()
	time.Sleep(settle)
	if mc.Dirty {
		if _, err := ga.Exec(ctx, qga.ExecRequest{Path: dirtier[0], Args: dirtier[1:]}); err != nil {
			return MigrateTimes{}, fmt.Errorf("start the dirtying loop: %w", err)
		}
		time.Sleep(2 * time.Second)
	}
	src, err := qmp.Dial(ctx, filepath.Join(dir, "src.qmp"))
	if err != nil {
		return MigrateTimes{}, err
	}
	defer src.Close()
	dst, err := qmp.Dial(ctx, filepath.Join(dir, "dst.qmp"))
	if err != nil {
		return MigrateTimes{}, err
	}
	defer dst.Close()
	return qmpMigrate(ctx, src, dst, mc.Dirty, tlsDir)
}

// startPlainPair starts the source QEMU and the target, waiting for an
// incoming migration; stop kills whichever started.
func startPlainPair(guest testguest.Result, accel string, mc MigrateCase, dir string) (stop func(), err error) {
	qemuArgs := func(side string) []string {
		return []string{"-name", "bench-plain-" + side, "-machine", "q35", "-accel", accel, "-cpu", qemu.CPUModel,
			"-m", strconv.FormatInt(int64(mc.Memory)>>20, 10) + "M", "-smp", "1",
			"-nodefaults", "-no-user-config", "-display", "none",
			"-kernel", guest.Kernel, "-initrd", guest.Initrd, "-append", guest.Cmdline,
			"-serial", "file:" + filepath.Join(dir, side+"-console.log"),
			"-qmp", "unix:" + filepath.Join(dir, side+".qmp") + ",server=on,wait=off",
			"-device", "virtio-serial-pci", "-chardev", "socket,id=qga0,path=" + filepath.Join(dir, side+"-qga.sock") + ",server=on,wait=off",
			"-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"}
	}
	var cmds []*exec.Cmd
	var logs []*os.File
	stop = func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		for _, f := range logs {
			f.Close()
		}
	}
	for _, side := range []string{"src", "dst"} {
		args := qemuArgs(side)
		if side == "dst" {
			args = append(args, "-incoming", "defer")
		}
		cmd := exec.Command("qemu-system-x86_64", args...)
		if out, err := os.Create(filepath.Join(dir, side+".log")); err == nil {
			cmd.Stdout, cmd.Stderr = out, out
			logs = append(logs, out)
		}
		if err := cmd.Start(); err != nil {
			return stop, err
		}
		cmds = append(cmds, cmd)
	}
	return stop, nil
}

// qmpMigrate migrates src to dst over loopback TCP (TLS with the
// certificates in tlsDir, if set) and times it until dst runs the guest.
func qmpMigrate(ctx context.Context, src, dst *qmp.Client, autoConverge bool, tlsDir string) (MigrateTimes, error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return MigrateTimes{}, err
	}
	uri := "tcp:127.0.0.1:" + port
	params := map[string]any{"max-bandwidth": int64(1) << 40, "downtime-limit": 300}
	if tlsDir != "" {
		if err := addTLS(ctx, src, dst, tlsDir); err != nil {
			return MigrateTimes{}, err
		}
		params["tls-hostname"] = benchTLSName
	}
	if err := dst.Execute(ctx, "migrate-incoming", map[string]any{"uri": uri}, nil); err != nil {
		return MigrateTimes{}, fmt.Errorf("migrate-incoming: %w", err)
	}
	caps := []map[string]any{{"capability": "auto-converge", "state": autoConverge}}
	if err := src.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		return MigrateTimes{}, err
	}
	if err := src.Execute(ctx, "migrate-set-parameters", params, nil); err != nil {
		return MigrateTimes{}, err
	}
	t0 := time.Now()
	if err := src.Execute(ctx, "migrate", map[string]any{"uri": uri}, nil); err != nil {
		return MigrateTimes{}, fmt.Errorf("migrate: %w", err)
	}
	for {
		var q struct {
			Status    string `json:"status"`
			TotalTime int64  `json:"total-time"`
			Downtime  int64  `json:"downtime"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := src.Execute(ctx, "query-migrate", nil, &q); err != nil {
			return MigrateTimes{}, err
		}
		switch q.Status {
		case "completed":
			// As vdc does before it calls a migration done: the target runs.
			if err := waitRunning(ctx, dst); err != nil {
				return MigrateTimes{}, err
			}
			took := time.Since(t0)
			return MigrateTimes{Total: float64(q.TotalTime), Downtime: float64(q.Downtime), EndToEnd: float64(took.Microseconds()) / 1000}, nil
		case "failed", "cancelled":
			return MigrateTimes{}, fmt.Errorf("migration %s: %s", q.Status, q.ErrorDesc)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// addTLS gives both QEMUs the certificates in tlsDir for the migration.
func addTLS(ctx context.Context, src, dst *qmp.Client, tlsDir string) error {
	for q, endpoint := range map[*qmp.Client]string{dst: "server", src: "client"} {
		obj := map[string]any{"qom-type": "tls-creds-x509", "id": "tls0", "dir": tlsDir, "endpoint": endpoint}
		if endpoint == "server" {
			obj["verify-peer"] = true
		}
		if err := q.Execute(ctx, "object-add", obj, nil); err != nil {
			return fmt.Errorf("add the TLS credentials: %w", err)
		}
		if err := q.Execute(ctx, "migrate-set-parameters", map[string]any{"tls-creds": "tls0"}, nil); err != nil {
			return err
		}
	}
	return nil
}

// benchTLSName is the name in the plain runs' certificate.
var benchTLSName = pki.HostDNSName("bench")

// benchTLSDir lays out a certificate for QEMU, as an agent does.
func benchTLSDir(dir string) (string, error) {
	ca, _, err := pki.NewCA("vdc bench CA")
	if err != nil {
		return "", err
	}
	cert, key, err := ca.Issue(pki.Names{CN: "host:bench", DNS: []string{benchTLSName}}, 24*time.Hour)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for name, data := range map[string][]byte{"ca-cert.pem": ca.CertPEM, "server-cert.pem": cert, "server-key.pem": key,
		"client-cert.pem": cert, "client-key.pem": key, "dh-params.pem": []byte(pki.FFDHE2048)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// waitRunning waits for a QEMU that received a migration to run the guest.
func waitRunning(ctx context.Context, q *qmp.Client) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var st struct {
			Status string `json:"status"`
		}
		if err := q.Execute(ctx, "query-status", nil, &st); err != nil {
			return err
		}
		if st.Status == "running" {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("the target QEMU did not run the guest after the migration")
}

func dialGuestAgent(ctx context.Context, sock string, timeout time.Duration) (*qga.Client, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		q, err := qga.Dial(pctx, sock)
		if err == nil {
			if err = q.Ping(pctx); err == nil {
				cancel()
				return q, nil
			}
			q.Close()
		}
		cancel()
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("the guest agent on %s did not answer within %s", sock, timeout)
}
