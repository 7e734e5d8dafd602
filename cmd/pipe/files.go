package main

import (
	"os"
	"path/filepath"
	"strings"
)

// walkPipeFiles calls fn for each .pipe file of dir. A directory argument
// ending in "/..." is walked recursively (skipping testdata and hidden
// directories); otherwise only the directory's own files are taken.
func walkPipeFiles(dir string, fn func(string)) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".pipe") {
			fn(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}

// expandArgs is expandFiles with Go-style "dir/..." patterns.
func expandArgs(args []string) ([]string, error) {
	var plain []string
	var out []string
	for _, a := range args {
		if root, ok := strings.CutSuffix(a, "/..."); ok {
			if root == "" || root == "." {
				root = "."
			}
			err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if d.IsDir() {
					name := d.Name()
					if p != root && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
						return filepath.SkipDir
					}
					return nil
				}
				if strings.HasSuffix(p, ".pipe") {
					out = append(out, p)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			continue
		}
		plain = append(plain, a)
	}
	files, err := expandFiles(plain)
	if err != nil {
		return nil, err
	}
	return append(out, files...), nil
}
