package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// confinedFS is the filesystem kustomize builds on: the disk, but only below root (and, when
// remote bases are allowed, below the directory they are cloned into). Each path is resolved,
// symlinks included, before it is checked, and the resolved path is what gets opened, so no
// spelling of a key, `..`, absolute path or link reaches a file outside. Writes are allowed
// only where clones go (kustomize removes its clones through the filesystem).
type confinedFS struct {
	disk   filesys.FileSystem
	root   string
	clones string
}

var _ filesys.FileSystem = confinedFS{}

var errOutside = errors.New("is outside the source artifact; files can only be loaded from inside it")

func newConfinedFS(root, clones string) (confinedFS, error) {
	if !filepath.IsAbs(root) {
		return confinedFS{}, fmt.Errorf("artifact root %q is not absolute", root)
	}
	resolved, err := filepath.EvalSymlinks(root)
	if err != nil {
		return confinedFS{}, fmt.Errorf("artifact root: %w", err)
	}
	return confinedFS{disk: filesys.MakeFsOnDisk(), root: resolved, clones: clones}, nil
}

// resolve returns where path really is, or an error naming path as the build gave it.
func (c confinedFS) resolve(path string) (string, error) {
	absolute, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	real, err := resolveLinks(absolute)
	if err != nil {
		return "", err
	}
	if within(real, c.root) || (c.clones != "" && within(real, c.clones)) {
		return real, nil
	}
	return "", &fs.PathError{Op: "open", Path: c.shown(path), Err: errOutside}
}

// shown is path as the user wrote it, relative to the artifact when it is lexically inside.
func (c confinedFS) shown(path string) string {
	if rel, err := filepath.Rel(c.root, path); err == nil && filepath.IsAbs(path) &&
		!strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

// resolveLinks is filepath.EvalSymlinks for paths that may not exist yet: the longest
// existing prefix is resolved and the rest appended.
func resolveLinks(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err == nil {
		return real, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	parent := filepath.Dir(path)
	if parent == path {
		return path, nil
	}
	realParent, err := resolveLinks(parent)
	if err != nil {
		return "", err
	}
	return filepath.Join(realParent, filepath.Base(path)), nil
}

func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

func (c confinedFS) writable(path string) (string, error) {
	real, err := c.resolve(path)
	if err != nil {
		return "", err
	}
	if c.clones == "" || !within(real, c.clones) {
		return "", &fs.PathError{Op: "write", Path: c.shown(path), Err: fs.ErrPermission}
	}
	return real, nil
}

func (c confinedFS) Create(path string) (filesys.File, error) {
	real, err := c.writable(path)
	if err != nil {
		return nil, err
	}
	return c.disk.Create(real)
}

func (c confinedFS) Mkdir(path string) error {
	real, err := c.writable(path)
	if err != nil {
		return err
	}
	return c.disk.Mkdir(real)
}

func (c confinedFS) MkdirAll(path string) error {
	real, err := c.writable(path)
	if err != nil {
		return err
	}
	return c.disk.MkdirAll(real)
}

func (c confinedFS) RemoveAll(path string) error {
	real, err := c.writable(path)
	if err != nil {
		return err
	}
	return c.disk.RemoveAll(real)
}

func (c confinedFS) WriteFile(path string, data []byte) error {
	real, err := c.writable(path)
	if err != nil {
		return err
	}
	return c.disk.WriteFile(real, data)
}

func (c confinedFS) Open(path string) (filesys.File, error) {
	real, err := c.resolve(path)
	if err != nil {
		return nil, err
	}
	return c.disk.Open(real)
}

func (c confinedFS) ReadFile(path string) ([]byte, error) {
	real, err := c.resolve(path)
	if err != nil {
		return nil, err
	}
	return c.disk.ReadFile(real)
}

func (c confinedFS) ReadDir(path string) ([]string, error) {
	real, err := c.resolve(path)
	if err != nil {
		return nil, err
	}
	return c.disk.ReadDir(real)
}

// IsDir and Exists say false for what is outside: they must not tell what exists there.
func (c confinedFS) IsDir(path string) bool {
	real, err := c.resolve(path)
	return err == nil && c.disk.IsDir(real)
}

func (c confinedFS) Exists(path string) bool {
	real, err := c.resolve(path)
	return err == nil && c.disk.Exists(real)
}

func (c confinedFS) CleanedAbs(path string) (filesys.ConfirmedDir, string, error) {
	real, err := c.resolve(path)
	if err != nil {
		return "", "", err
	}
	if _, err := os.Stat(real); err != nil {
		return "", "", err
	}
	return c.disk.CleanedAbs(real)
}

// Glob keeps the matches that resolve inside; the pattern's directory must be inside too.
func (c confinedFS) Glob(pattern string) ([]string, error) {
	if _, err := c.resolve(filepath.Dir(pattern)); err != nil {
		return nil, err
	}
	matches, err := c.disk.Glob(pattern)
	if err != nil {
		return nil, err
	}
	kept := matches[:0]
	for _, match := range matches {
		if _, err := c.resolve(match); err == nil {
			kept = append(kept, match)
		}
	}
	return kept, nil
}

// Walk walks the resolved directory; filepath.Walk does not follow links, and whatever the
// walk function then opens goes through the checks above.
func (c confinedFS) Walk(path string, walkFn filepath.WalkFunc) error {
	real, err := c.resolve(path)
	if err != nil {
		return err
	}
	return c.disk.Walk(real, walkFn)
}
