// Package imageinspect is the project's one image reader. It opens an image
// however it is stored (a docker-archive as `docker save` or BuildKit's docker
// exporter writes it, an OCI archive, an OCI layout directory) with
// go-containerregistry, and reads it once: configuration, layer sizes, every
// entry of every layer (a file deleted later still ships in the image) and
// the final filesystem a container sees (go-containerregistry's
// mutate.Extract applies the whiteouts). The build's size report, the image
// checks (secrets, build tools, size budgets) and the offline base images of
// both engines all read images through it.
package imageinspect

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
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
)

// RefNameAnnotation names an image in an OCI layout's index.json.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// OpenFile opens the image in the tarball at p: a docker-archive holding
// exactly one image, or an OCI archive (its first manifest). close removes
// what opening it needed on disk.
func OpenFile(p string) (img v1.Image, close func(), err error) {
	noop := func() {}
	names, err := tarNames(p)
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
	// go-containerregistry reads OCI layouts from a directory only.
	dir, err := os.MkdirTemp("", "imageinspect-")
	if err != nil {
		return nil, noop, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if err := untar(p, dir); err != nil {
		cleanup()
		return nil, noop, fmt.Errorf("%s: %w", p, err)
	}
	img, _, err = FromLayout(dir, "", nil)
	if err != nil {
		cleanup()
		return nil, noop, fmt.Errorf("%s: %w", p, err)
	}
	return img, cleanup, nil
}

// FromLayout returns the image in the OCI layout at dir whose ref.name
// annotation is refName (any single image when refName is empty), and the
// index.json entry that names it: its digest is what a build pins. An entry
// that is itself an index is resolved for platform (nil: the only image).
// Every manifest and the config are checked against their digests, so a
// damaged layout is reported here and not as a strange build later.
func FromLayout(dir, refName string, platform *v1.Platform) (v1.Image, v1.Descriptor, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s is not an OCI image layout: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s/index.json: %w", dir, err)
	}
	var found []v1.Descriptor
	var names []string
	for _, d := range im.Manifests {
		names = append(names, d.Annotations[RefNameAnnotation])
		if refName == "" || d.Annotations[RefNameAnnotation] == refName {
			found = append(found, d)
		}
	}
	sort.Strings(names)
	switch {
	case len(found) == 0:
		return nil, v1.Descriptor{}, fmt.Errorf("no image named %q in %s (names: %q)", refName, dir, names)
	case len(found) > 1:
		return nil, v1.Descriptor{}, fmt.Errorf("%d images match %q in %s; pass the name (names: %q)", len(found), refName, dir, names)
	}
	img, err := resolve(idx, found[0], platform)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: %w", dir, err)
	}
	return img, found[0], nil
}

// resolve follows desc down nested indexes to an image, verifying each step.
func resolve(idx v1.ImageIndex, desc v1.Descriptor, platform *v1.Platform) (v1.Image, error) {
	for range 4 { // nested indexes are legal but never deep
		if !desc.MediaType.IsIndex() {
			img, err := idx.Image(desc.Digest)
			if err != nil {
				return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
			}
			if err := verify(img.RawManifest, desc.Digest, "manifest"); err != nil {
				return nil, err
			}
			cn, err := img.ConfigName()
			if err != nil {
				return nil, err
			}
			if err := verify(img.RawConfigFile, cn, "config"); err != nil {
				return nil, err
			}
			return img, nil
		}
		inner, err := idx.ImageIndex(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		if err := verify(inner.RawManifest, desc.Digest, "index"); err != nil {
			return nil, err
		}
		m, err := inner.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		next, ok := matchPlatform(m.Manifests, platform)
		if !ok {
			want := "a single image"
			if platform != nil {
				want = platform.OS + "/" + platform.Architecture
			}
			return nil, fmt.Errorf("index %s has no image for %s", desc.Digest, want)
		}
		idx, desc = inner, next
	}
	return nil, fmt.Errorf("index nesting too deep at %s", desc.Digest)
}

func matchPlatform(ms []v1.Descriptor, p *v1.Platform) (v1.Descriptor, bool) {
	if p != nil {
		for _, m := range ms {
			if m.Platform != nil && m.Platform.OS == p.OS && m.Platform.Architecture == p.Architecture {
				return m, true
			}
		}
	}
	if len(ms) == 1 && ms[0].Platform == nil {
		return ms[0], true
	}
	return v1.Descriptor{}, false
}

func verify(raw func() ([]byte, error), want v1.Hash, what string) error {
	b, err := raw()
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, want, err)
	}
	if want.Algorithm != "sha256" {
		return fmt.Errorf("%s %s: unsupported digest algorithm", what, want)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != want.Hex {
		return fmt.Errorf("%s blob %s is corrupt (content digest sha256:%s)", what, want, got)
	}
	return nil
}

func tarNames(p string) (map[string]bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	return names, eachEntry(f, func(h *tar.Header, _ io.Reader) error {
		names[strings.TrimPrefix(h.Name, "./")] = true
		return nil
	})
}

// untar unpacks an OCI archive (directories and regular files are all it holds).
func untar(p, dir string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return eachEntry(f, func(h *tar.Header, r io.Reader) error {
		target := filepath.Join(dir, filepath.FromSlash(path.Clean("/"+h.Name)))
		switch h.Typeflag {
		case tar.TypeDir:
			return os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			w, err := os.Create(target)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, r)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			return err
		}
		return nil
	})
}

// eachEntry calls fn for every entry of the tar stream r, with a reader of
// the entry's content.
func eachEntry(r io.Reader, fn func(*tar.Header, io.Reader) error) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(h, tr); err != nil {
			return err
		}
	}
}
