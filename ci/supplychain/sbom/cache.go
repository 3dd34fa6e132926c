package sbom

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/imageinspect"
)

// Cache keeps the documents of images already cataloged, under a key made of
// everything that decides them: this tool's own binary, the image's config
// digest (which names its layers) and the name and version recorded in them.
// Cataloging the backend takes 5-7 s of both cores; a second test-e2e on the
// same images, and the fault tests that reuse them, read them from here.
type Cache struct {
	Dir string
	// Keep is how many images stay cached (the most recently used); 0: DefaultKeep.
	Keep int
}

// DefaultKeep bounds the cache to a few recent builds of both images.
const DefaultKeep = 16

// cacheFormat changes when what an entry holds changes.
const cacheFormat = "kgci-sbom-cache-v2"

// indexFile lists an entry's documents, in order, and what the command
// printed about them (Meta).
const indexFile = "entry.json"

type cacheIndex struct {
	Files []string        `json:"files"`
	Meta  json.RawMessage `json:"meta"`
}

// Key is the entry of service's image in tarball as tool (this binary) would
// catalog it with name and version.
func (c Cache) Key(tool, service, tarball, name, version string) (string, error) {
	img, closeImg, err := imageinspect.OpenFile(tarball)
	if err != nil {
		return "", err
	}
	defer closeImg()
	cfg, err := img.ConfigName()
	if err != nil {
		return "", fmt.Errorf("%s: config digest: %w", tarball, err)
	}
	bin, err := os.Open(tool)
	if err != nil {
		return "", err
	}
	defer bin.Close()
	h := sha256.New()
	if _, err := io.Copy(h, bin); err != nil {
		return "", err
	}
	toolDigest := hex.EncodeToString(h.Sum(nil))
	k := sha256.Sum256([]byte(strings.Join([]string{cacheFormat, toolDigest, service, cfg.String(), name, version}, "\x00")))
	return hex.EncodeToString(k[:]), nil
}

// Get copies the documents of entry key into out and returns their paths (in
// the order Put was given them) and the metadata Put stored; ok is false when
// there is no such entry.
func (c Cache) Get(key, out string) (files []string, meta []byte, ok bool, err error) {
	dir := filepath.Join(c.Dir, key)
	raw, err := os.ReadFile(filepath.Join(dir, indexFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, err
	}
	var idx cacheIndex
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, nil, false, fmt.Errorf("%s: %w", filepath.Join(dir, indexFile), err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, nil, false, err
	}
	for _, name := range idx.Files {
		dst := filepath.Join(out, name)
		if err := copyFile(filepath.Join(dir, name), dst); err != nil {
			return nil, nil, false, err
		}
		files = append(files, dst)
	}
	// Most recently used: the last to be pruned.
	now := time.Now()
	_ = os.Chtimes(dir, now, now)
	return files, idx.Meta, true, nil
}

// Put stores files (documents of one image) and meta as entry key, whole or
// not at all, and prunes the cache to its Keep most recently used entries.
func (c Cache) Put(key string, files []string, meta []byte) error {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(c.Dir, ".partial-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	idx := cacheIndex{Meta: meta}
	for _, f := range files {
		idx.Files = append(idx.Files, filepath.Base(f))
		if err := copyFile(f, filepath.Join(tmp, filepath.Base(f))); err != nil {
			return err
		}
	}
	raw, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, indexFile), raw, 0o644); err != nil {
		return err
	}
	dst := filepath.Join(c.Dir, key)
	err = os.Rename(tmp, dst)
	if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
		// Another run stored the same entry meanwhile: theirs stays. One without
		// its index (a run killed while deleting it) is replaced.
		if _, statErr := os.Stat(filepath.Join(dst, indexFile)); statErr == nil {
			err = nil
		} else if err = os.RemoveAll(dst); err == nil {
			err = os.Rename(tmp, dst)
		}
	}
	if err != nil {
		return err
	}
	return c.prune()
}

func (c Cache) prune() error {
	keep := c.Keep
	if keep <= 0 {
		keep = DefaultKeep
	}
	entries, err := os.ReadDir(c.Dir)
	if err != nil {
		return err
	}
	type entry struct {
		name string
		used time.Time
	}
	var all []entry
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		all = append(all, entry{e.Name(), info.ModTime()})
	}
	slices.SortFunc(all, func(a, b entry) int { return b.used.Compare(a.used) })
	for _, e := range all[min(keep, len(all)):] {
		if err := os.RemoveAll(filepath.Join(c.Dir, e.name)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
