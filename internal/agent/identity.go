package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/atomicfile"
	"github.com/vdc-project/vdc/internal/pki"
)

// identity is what a joined host keeps in its data dir.
type identity struct {
	HostID string `json:"hostId"`
	Name   string `json:"name"`
	Server string `json:"server"`
}

func (a *Agent) identityPath() string { return filepath.Join(a.cfg.DataDir, "identity.json") }
func (a *Agent) pkiPath(f string) string {
	return filepath.Join(a.cfg.DataDir, "pki", f)
}

// loadOrJoin returns the host's identity and TLS material, joining the
// server with the join token the first time, and again when the
// certificate has expired and the agent was given a token (one from
// `vdc host replace`).
func (a *Agent) loadOrJoin(ctx context.Context) error {
	b, err := os.ReadFile(a.identityPath())
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &a.id); err != nil {
			return fmt.Errorf("read host identity %s: %w", a.identityPath(), err)
		}
		if a.cfg.Name != "" && a.cfg.Name != a.id.Name {
			return fmt.Errorf("data dir %s belongs to host %q, not %q", a.cfg.DataDir, a.id.Name, a.cfg.Name)
		}
	case errors.Is(err, os.ErrNotExist):
		tok, err := a.joinToken()
		if err != nil {
			return err
		}
		if tok == "" {
			return fmt.Errorf("host %q has not joined yet: give it a join token with --join-token-file FILE or VDC_JOIN_TOKEN (create one with `vdc host token create`)", a.cfg.Name)
		}
		if err := a.joinWithRetry(ctx, tok); err != nil {
			return err
		}
	default:
		return fmt.Errorf("read host identity: %w", err)
	}
	if err := a.loadTLS(); err != nil {
		return err
	}
	leaf := a.certificate().Leaf
	if time.Now().Before(leaf.NotAfter) {
		return nil
	}
	tok, err := a.joinToken()
	if err != nil {
		return err
	}
	if tok == "" {
		return fmt.Errorf("the certificate of host %q expired at %s and the server no longer accepts it: the host must be replaced. "+
			"Run `vdc host replace %s`, then start this agent with the token it prints (--join-token-file FILE or VDC_JOIN_TOKEN)",
			a.id.Name, leaf.NotAfter.Format(time.RFC3339), a.id.Name)
	}
	a.log.Warn("the host certificate has expired; joining again with the join token", "expired", leaf.NotAfter)
	if err := a.joinWithRetry(ctx, tok); err != nil {
		return err
	}
	return a.loadTLS()
}

// joinToken is the token the agent was given, if any: read from
// --join-token-file when needed, so that a joined host may lose the file.
func (a *Agent) joinToken() (string, error) {
	if a.cfg.JoinToken != "" || a.cfg.JoinTokenFile == "" {
		return a.cfg.JoinToken, nil
	}
	b, err := os.ReadFile(a.cfg.JoinTokenFile)
	if err != nil {
		return "", fmt.Errorf("read join token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// WriteJoinTokenFile hands a join token to an agent process (--join-token-file):
// in a file only its owner reads, never on its command line.
func WriteJoinTokenFile(path, token string) error {
	// A new file, so that it never has another's mode (WriteFile keeps it).
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("write join token file: %w", err)
	}
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("write join token file: %w", err)
	}
	return nil
}

// joinWithRetry joins, trying again while the server is unreachable or
// busy: an agent may well start before its server. A refused token or a
// bad name is final.
func (a *Agent) joinWithRetry(ctx context.Context, tok string) error {
	wait := time.Second
	for {
		err := a.join(ctx, tok)
		var ae *api.Error
		final := errors.As(err, &ae) && ae.Status/100 == 4
		if err == nil || final || ctx.Err() != nil {
			return err
		}
		a.log.Warn("cannot join yet; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// ParseJoinToken splits a token into its secret and the CA fingerprint.
func ParseJoinToken(tok string) (secret, caFingerprint string, err error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != "vdc1" || len(parts[2]) != 64 {
		return "", "", api.Errorf(api.ErrInvalid, "malformed join token (want vdc1.<secret>.<ca-sha256>)")
	}
	return parts[1], parts[2], nil
}

// pinnedTLS trusts a server whose chain includes the CA with the
// fingerprint from the join token: the host has nothing else to go on yet.
func pinnedTLS(fp string) *tls.Config {
	return pki.Harden(&tls.Config{
		InsecureSkipVerify: true, // replaced by the pinned verification below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			for _, c := range cs.PeerCertificates {
				if pki.Fingerprint(c.Raw) == fp {
					pool := x509.NewCertPool()
					pool.AddCert(c)
					_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool})
					return err
				}
			}
			return errors.New("server certificate is not signed by the CA named in the join token")
		},
	})
}

// join presents the join token and saves the identity and certificate
// the server gives.
func (a *Agent) join(ctx context.Context, tok string) error {
	_, fp, err := ParseJoinToken(tok)
	if err != nil {
		return err
	}
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(a.cfg.Name)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(api.JoinRequest{Token: tok, Name: a.cfg.Name, CSR: string(csrPEM)})
	// One call: no connection left open on the server, where it would
	// count against the per-address limit until it timed out.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pinnedTLS(fp), DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(a.cfg.ServerURL, "/")+"/api/v1/agent/join", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("join %s: %w", a.cfg.ServerURL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("join server %s as host %q: %w", a.cfg.ServerURL, a.cfg.Name, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		if json.Unmarshal(rb, &eb) == nil && eb.Error != nil {
			eb.Error.Status = resp.StatusCode
			return fmt.Errorf("join server %s as host %q: %w", a.cfg.ServerURL, a.cfg.Name, eb.Error)
		}
		return fmt.Errorf("join server %s as host %q: HTTP %d", a.cfg.ServerURL, a.cfg.Name, resp.StatusCode)
	}
	var jr api.JoinResponse
	if err := json.Unmarshal(rb, &jr); err != nil {
		return fmt.Errorf("join: bad answer from server: %w", err)
	}
	if pool, err := pki.PoolFromPEM([]byte(jr.CA)); err != nil || pool == nil {
		return fmt.Errorf("join: server sent no CA: %v", err)
	}
	if err := a.saveCert(keyPEM, []byte(jr.Certificate), []byte(jr.CA)); err != nil {
		return fmt.Errorf("join server %s as host %q: %w", a.cfg.ServerURL, a.cfg.Name, err)
	}
	if a.id.HostID != "" && a.id.HostID != jr.HostID {
		a.log.Warn("joined as a new host: the host this data dir was for had been removed", "was", a.id.HostID, "now", jr.HostID)
	}
	a.id = identity{HostID: jr.HostID, Name: a.cfg.Name, Server: a.cfg.ServerURL}
	b, _ := json.MarshalIndent(a.id, "", "  ")
	if err := atomicfile.WriteFile(a.identityPath(), b, 0o600); err != nil {
		return fmt.Errorf("save host identity: %w", err)
	}
	a.log.Info("joined the datacenter", "host", a.cfg.Name, "hostID", jr.HostID, "server", a.cfg.ServerURL)
	return nil
}
