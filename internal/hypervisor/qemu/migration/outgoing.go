package migration

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

// Prepare sets the parameters of a migration out to the target: its TLS
// object (from the certificates in tlsDir) when the target is checked by
// name, and every parameter, to the default where the request has none.
func Prepare(ctx context.Context, m Monitor, tlsDir string, to hypervisor.MigrateTarget) error {
	tls := ""
	if to.TLSHostname != "" {
		tls = "client"
		if err := AddTLS(ctx, m, tlsDir, tls); err != nil {
			return err
		}
	}
	// Parameters stay set in QEMU from one migration to the next: set
	// every one, to the default where the request has none.
	extra := map[string]any{"auto-converge": to.AutoConverge, "tls-hostname": to.TLSHostname,
		"max-bandwidth": UnlimitedBandwidth, "downtime-limit": DefaultDowntimeLimit.Milliseconds()}
	if to.MaxBandwidth > 0 {
		extra["max-bandwidth"] = to.MaxBandwidth
	}
	if to.DowntimeLimit > 0 {
		extra["downtime-limit"] = to.DowntimeLimit.Milliseconds()
	}
	return SetParams(ctx, m, to.Multifd, to.Compress, tls, extra)
}

// Send migrates the VM's state to uri, recording its progress in job,
// and returns QEMU's last word once the state has all gone (the VM is
// paused then). A migration that fails or is cancelled is an error.
func Send(ctx context.Context, m Monitor, job *Job, uri string) (Query, error) {
	job.Update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationActive })
	if err := m.Execute(ctx, "migrate", map[string]any{"uri": uri}, nil); err != nil {
		return Query{}, err
	}
	for {
		var q Query
		if err := m.Execute(ctx, "query-migrate", nil, &q); err != nil {
			return q, err
		}
		job.Update(func(st *hypervisor.MigrationStatus) { q.Into(st) })
		switch q.Status {
		case "completed":
			return q, nil
		case "failed":
			return q, fmt.Errorf("QEMU: %s", q.ErrorDesc)
		case "cancelled":
			job.Update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationCancelled })
			return q, errors.New("cancelled")
		}
		select {
		case <-ctx.Done():
			return q, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}
