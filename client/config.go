package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Config is what a client needs to reach a server: written by `vdc up` and
// `vdc server`, read by the CLI.
type Config struct {
	Server string `json:"server"`
	CA     string `json:"ca"` // PEM of the datacenter CA
	Token  string `json:"token"`
}

// DefaultConfigPath is $VDC_CONFIG, else <user config dir>/vdc/config.json.
func DefaultConfigPath() string {
	if p := os.Getenv("VDC_CONFIG"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "."
	}
	return filepath.Join(dir, "vdc", "config.json")
}

// LoadConfig reads a client config file.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return c, fmt.Errorf("no client config at %s: start vdc with `vdc up`, or set VDC_CONFIG to the admin.json a server wrote", path)
		}
		return c, fmt.Errorf("read client config: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("read client config %s: %w", path, err)
	}
	return c, nil
}

// Save writes the config, readable only by its owner (it holds a token).
func (c Config) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save client config: %w", err)
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save client config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save client config: %w", err)
	}
	return nil
}
