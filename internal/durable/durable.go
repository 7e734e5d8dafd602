// Package durable replaces small files (checkpoints, sink state) so that a
// crash at any moment leaves either the old content or the new, never a
// mix: the data goes to a temporary file beside the target, is synced, is
// renamed over the target, and the directory is synced.
package durable

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TempPrefix is the name prefix of the temporary files WriteFile creates
// for path; RemoveTemps deletes those a crash left behind.
func TempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// WriteFile durably replaces path with data.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, TempPrefix(path)+"*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(fmt.Errorf("writing %s: %w", path, err))
	}
	if err := tmp.Sync(); err != nil {
		return fail(fmt.Errorf("syncing %s: %w", path, err))
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return err
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes the directory's entries (a rename, a new file) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// RemoveTemps deletes the temporary files an interrupted WriteFile of path
// left behind.
func RemoveTemps(path string) error {
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return err
	}
	prefix := TempPrefix(path)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			if err := os.Remove(filepath.Join(filepath.Dir(path), e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
