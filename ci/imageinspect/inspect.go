// Package imageinspect reads an exported image tarball (docker-archive as
// written by `docker save` or BuildKit's docker exporter, or an OCI archive)
// and reports its configuration, layer sizes and the files of its final
// filesystem, for size budgets and content checks.
package imageinspect

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	kgzip "github.com/klauspost/compress/gzip"
)

// Layer is one filesystem layer.
type Layer struct {
	Digest       string `json:"digest"`
	DiffID       string `json:"diff_id"`
	Compressed   int64  `json:"compressed"`
	Uncompressed int64  `json:"uncompressed"`
	// CreatedBy is the history entry of the step that made the layer.
	CreatedBy string `json:"created_by,omitempty"`
	Entries   int    `json:"entries"`
}

// File is an entry of the final (merged) filesystem.
type File struct {
	Path     string `json:"path"` // absolute, e.g. /app/app/main.py
	Type     byte   `json:"type"` // tar type flag
	Mode     int64  `json:"mode"`
	UID      int    `json:"uid"`
	GID      int    `json:"gid"`
	Size     int64  `json:"size"`
	Linkname string `json:"linkname,omitempty"`
	Layer    int    `json:"layer"` // index of the layer that last wrote it
}

// IsDir, IsRegular report the entry type.
func (f File) IsDir() bool     { return f.Type == tar.TypeDir }
func (f File) IsRegular() bool { return f.Type == tar.TypeReg || f.Type == tar.TypeRegA }

// Image is what Inspect found.
type Image struct {
	Path   string        `json:"path"`
	Digest string        `json:"digest"` // manifest digest
	Config v1.ConfigFile `json:"-"`
	Layers []Layer       `json:"layers"`
	// Totals over Layers.
	Compressed   int64 `json:"compressed"`
	Uncompressed int64 `json:"uncompressed"`
	// Files of the final filesystem, whiteouts applied, sorted by path.
	Files []File `json:"-"`
}

// Inspect reads the image in the tarball at p. A docker-archive must hold
// exactly one image; an OCI archive's first manifest is used.
func Inspect(p string) (*Image, error) {
	img, cleanup, err := open(p)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	out := &Image{Path: p}
	if d, err := img.Digest(); err == nil {
		out.Digest = d.String()
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%s: reading image config: %w", p, err)
	}
	out.Config = *cfg
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("%s: listing layers: %w", p, err)
	}
	// History entries without a layer do not count.
	var createdBy []string
	for _, h := range cfg.History {
		if !h.EmptyLayer {
			createdBy = append(createdBy, h.CreatedBy)
		}
	}
	fsys := newMerged()
	for i, l := range layers {
		var li Layer
		if d, err := l.Digest(); err == nil {
			li.Digest = d.String()
		}
		// From the config: asking the layer would decompress it once more.
		if i < len(cfg.RootFS.DiffIDs) {
			li.DiffID = cfg.RootFS.DiffIDs[i].String()
		}
		if li.Compressed, err = l.Size(); err != nil {
			return nil, fmt.Errorf("%s: layer %d size: %w", p, i, err)
		}
		if i < len(createdBy) {
			li.CreatedBy = createdBy[i]
		}
		rc, err := uncompressed(l)
		if err != nil {
			return nil, fmt.Errorf("%s: layer %d: %w", p, i, err)
		}
		cr := &countingReader{r: rc}
		li.Entries, err = fsys.apply(i, cr)
		// Drain padding after the tar end marker so the count is the
		// whole uncompressed stream.
		_, _ = io.Copy(io.Discard, cr)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: layer %d: %w", p, i, err)
		}
		li.Uncompressed = cr.n
		out.Layers = append(out.Layers, li)
		out.Compressed += li.Compressed
		out.Uncompressed += li.Uncompressed
	}
	out.Files = fsys.list()
	return out, nil
}

func open(p string) (v1.Image, func(), error) {
	noop := func() {}
	f, err := os.Open(p)
	if err != nil {
		return nil, noop, err
	}
	names, err := tarNames(f)
	f.Close()
	if err != nil {
		return nil, noop, fmt.Errorf("%s is not a tar archive: %w", p, err)
	}
	if names["manifest.json"] {
		img, err := tarball.ImageFromPath(p, nil)
		if err != nil {
			return nil, noop, fmt.Errorf("%s: %w", p, err)
		}
		return img, noop, nil
	}
	if !names["index.json"] {
		return nil, noop, fmt.Errorf("%s has neither manifest.json (docker-archive) nor index.json (OCI archive)", p)
	}
	dir, err := os.MkdirTemp("", "imageinspect-")
	if err != nil {
		return nil, noop, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if err := untar(p, dir); err != nil {
		cleanup()
		return nil, noop, fmt.Errorf("%s: %w", p, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		cleanup()
		return nil, noop, fmt.Errorf("%s: %w", p, err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) == 0 {
		cleanup()
		return nil, noop, fmt.Errorf("%s: empty OCI index (%v)", p, err)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		cleanup()
		return nil, noop, fmt.Errorf("%s: %w", p, err)
	}
	return img, cleanup, nil
}

func tarNames(r io.Reader) (map[string]bool, error) {
	tr := tar.NewReader(r)
	names := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		names[strings.TrimPrefix(h.Name, "./")] = true
	}
}

func untar(p, dir string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + h.Name)
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			w, err := os.Create(target)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, tr)
			w.Close()
			if err != nil {
				return err
			}
		}
	}
}

// uncompressed streams the layer's tar. gzip blobs are inflated with
// klauspost's decoder, about twice as fast as compress/gzip on the 100+ MB
// layers of the backend image.
func uncompressed(l v1.Layer) (io.ReadCloser, error) {
	mt, err := l.MediaType()
	if err != nil || !strings.HasSuffix(string(mt), "gzip") {
		return l.Uncompressed()
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	zr, err := kgzip.NewReader(rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, rc}, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// merged applies layers in order with OCI whiteout semantics.
type merged struct{ files map[string]File }

func newMerged() *merged { return &merged{files: map[string]File{}} }

const whPrefix = ".wh."
const whOpaque = ".wh..wh..opq"

func (m *merged) removeTree(p string, below int) {
	for k, f := range m.files {
		if (k == p || strings.HasPrefix(k, p+"/")) && f.Layer < below {
			delete(m.files, k)
		}
	}
}

func (m *merged) apply(layer int, r io.Reader) (int, error) {
	tr := tar.NewReader(r)
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
		p := path.Clean("/" + h.Name)
		dir, base := path.Split(p)
		dir = path.Clean(dir)
		switch {
		case base == whOpaque:
			// Everything earlier layers put in dir disappears; the dir stays.
			for k, f := range m.files {
				if strings.HasPrefix(k, strings.TrimSuffix(dir, "/")+"/") && f.Layer < layer {
					delete(m.files, k)
				}
			}
			continue
		case strings.HasPrefix(base, whPrefix):
			m.removeTree(path.Join(dir, strings.TrimPrefix(base, whPrefix)), layer)
			continue
		}
		if old, ok := m.files[p]; ok && old.IsDir() && h.Typeflag != tar.TypeDir {
			// A non-directory replaces the whole tree that was at that path.
			m.removeTree(p, layer)
		}
		m.files[p] = File{
			Path: p, Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid,
			Size: h.Size, Linkname: h.Linkname, Layer: layer,
		}
	}
}

func (m *merged) list() []File {
	out := make([]File, 0, len(m.files))
	for _, f := range m.files {
		if f.Path == "/" {
			continue
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// File returns the entry at p (absolute) in the final filesystem.
func (i *Image) File(p string) (File, bool) {
	p = path.Clean("/" + p)
	n := sort.Search(len(i.Files), func(k int) bool { return i.Files[k].Path >= p })
	if n < len(i.Files) && i.Files[n].Path == p {
		return i.Files[n], true
	}
	return File{}, false
}

// Match returns the files whose path matches the path.Match pattern, or,
// for a pattern without a slash, whose base name matches it (".env",
// "*.pem", "gcc*").
func (i *Image) Match(pattern string) []File {
	var out []File
	for _, f := range i.Files {
		target := f.Path
		if !strings.Contains(pattern, "/") {
			target = path.Base(f.Path)
		}
		if ok, _ := path.Match(pattern, target); ok {
			out = append(out, f)
		}
	}
	return out
}

// Under returns the files below dir (not dir itself).
func (i *Image) Under(dir string) []File {
	dir = strings.TrimSuffix(path.Clean("/"+dir), "/") + "/"
	var out []File
	for _, f := range i.Files {
		if strings.HasPrefix(f.Path, dir) {
			out = append(out, f)
		}
	}
	return out
}

// Env returns the config's environment as a map.
func (i *Image) Env() map[string]string {
	m := map[string]string{}
	for _, e := range i.Config.Config.Env {
		k, v, _ := strings.Cut(e, "=")
		m[k] = v
	}
	return m
}
