// Package atomicfile writes a file through a temporary file and a rename, so that a reader
// (an agent sharing a ca_file, the next start after a crash) never sees half of it.
//
// It imports only the standard library: the technician's client uses it too.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data, with permissions mode: written and synced to a temporary
// file in the same directory, then renamed over path; the directory is synced too (best
// effort), so that the rename survives a power loss.
func Write(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
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
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
