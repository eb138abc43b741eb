// Package atomicfile writes files that a crash leaves whole: the old
// content or the new one, never half of either.
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteFile writes data to path with mode through a temporary file in the
// same directory, synced and renamed into place. The mode is set before
// any data is written, so a secret is never readable by others, even
// for a moment.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
