package lease

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrHeld says another running copy holds the lease.
var ErrHeld = errors.New("held by another running copy")

// Dir is the directory of a datastore that holds its VMs' leases.
const Dir = ".vdc/leases"

// Path is the lease file of a VM on a datastore.
func Path(datastoreRoot, vmID string) string {
	return filepath.Join(datastoreRoot, Dir, vmID)
}

// HeldError is ErrHeld with what the holder wrote in the file.
type HeldError struct {
	Path   string
	Holder string
}

func (e *HeldError) Error() string {
	if e.Holder == "" {
		return fmt.Sprintf("lease %s is %v", e.Path, ErrHeld)
	}
	return fmt.Sprintf("lease %s is %v (%s)", e.Path, ErrHeld, e.Holder)
}

func (e *HeldError) Unwrap() error { return ErrHeld }

var whole = unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}

// Acquire takes the lease at path without waiting and writes holder into
// it, for whoever finds it held. The lease is held for as long as the
// returned file (or a copy of its descriptor, in this process or one it
// was passed to) stays open.
func Acquire(path, holder string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("take lease %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("take lease %s: %w", path, err)
	}
	lk := whole
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, &HeldError{Path: path, Holder: readHolder(path)}
		}
		return nil, fmt.Errorf("take lease %s: %w", path, err)
	}
	line := fmt.Sprintf("%s since %s\n", holder, time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(line), 0)
	}
	return f, nil
}

// Held reports whether some open file holds the lease, and what its
// holder wrote.
func Held(path string) (bool, string, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("read lease %s: %w", path, err)
	}
	defer f.Close()
	lk := whole
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false, "", fmt.Errorf("read lease %s: %w", path, err)
	}
	if lk.Type == unix.F_UNLCK {
		return false, "", nil
	}
	return true, readHolder(path), nil
}

func readHolder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) > 4096 {
		return ""
	}
	return strings.TrimSpace(string(b))
}
