package llbgraph

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// Layout is an offline base image: an OCI layout directory made by
// scripts/make-base-images.sh. BuildKit reads its blobs through a session
// content store (llb.OCILayout), so the digest is pinned in the graph and an
// unchanged layout is a cache hit from one solve to the next.
type Layout struct {
	Kind spec.BaseKind
	Dir  string
	// StoreID names the content store in the solve's OCIStores.
	StoreID string
	// Digest is the manifest (or index) digest recorded in index.json.
	Digest digest.Digest
	// Config is the image config JSON: the base's env (PATH etc.) and
	// working directory are inherited from it, as FROM would.
	Config []byte
}

// RefName is the image reference name annotation make-base-images.sh sets.
const RefName = ocispecs.AnnotationRefName

// DefaultBaseDir is where make-base-images.sh leaves the layouts.
func DefaultBaseDir() string {
	c := os.Getenv("KGCI_CACHE")
	if c == "" {
		c = "/var/cache/kidney-genetics-ci"
	}
	return filepath.Join(c, "base")
}

// ErrMissingLayout is wrapped by ReadLayout when a base has not been made.
var ErrMissingLayout = errors.New("offline base image layout missing")

// ReadLayout reads the layout for name under baseDir (baseDir/name) and
// resolves the image for platform.
func ReadLayout(baseDir string, kind spec.BaseKind, name string, platform ocispecs.Platform) (Layout, error) {
	dir := filepath.Join(baseDir, name)
	idxPath := filepath.Join(dir, "index.json")
	dt, err := os.ReadFile(idxPath)
	if errors.Is(err, fs.ErrNotExist) {
		return Layout{}, fmt.Errorf("%w: %s not found; run scripts/make-base-images.sh (or pass the directory holding the layouts with --base-cache)", ErrMissingLayout, idxPath)
	}
	if err != nil {
		return Layout{}, fmt.Errorf("reading base layout %s: %w", idxPath, err)
	}
	var idx ocispecs.Index
	if err := json.Unmarshal(dt, &idx); err != nil {
		return Layout{}, fmt.Errorf("%s is not an OCI index: %w; remake it with scripts/make-base-images.sh", idxPath, err)
	}
	desc, err := pickManifest(idx.Manifests, name)
	if err != nil {
		return Layout{}, fmt.Errorf("%s: %w", idxPath, err)
	}
	cfg, err := resolveConfig(dir, desc, platform)
	if err != nil {
		return Layout{}, fmt.Errorf("base layout %s: %w; remake it with scripts/make-base-images.sh", dir, err)
	}
	return Layout{Kind: kind, Dir: dir, StoreID: name, Digest: desc.Digest, Config: cfg}, nil
}

// ReadLayouts reads the layout of every offline base an image needs.
func ReadLayouts(baseDir string, img spec.Image, platform ocispecs.Platform) (map[spec.BaseKind]Layout, error) {
	bases := spec.Bases(spec.Offline)
	out := map[spec.BaseKind]Layout{}
	for _, k := range BaseKinds(img) {
		l, err := ReadLayout(baseDir, k, bases[k].Ref, platform)
		if err != nil {
			return nil, err
		}
		out[k] = l
	}
	return out, nil
}

// pickManifest prefers the entry annotated with the layout's own name, so
// a layout that also holds other tags still resolves to the right image.
func pickManifest(ms []ocispecs.Descriptor, name string) (ocispecs.Descriptor, error) {
	for _, m := range ms {
		if m.Annotations[RefName] == name {
			return m, nil
		}
	}
	if len(ms) == 1 {
		return ms[0], nil
	}
	return ocispecs.Descriptor{}, fmt.Errorf("no manifest annotated %s=%s among %d entries", RefName, name, len(ms))
}

func readBlob(dir string, d digest.Digest) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("bad digest %q: %w", d, err)
	}
	p := filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
	dt, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if got := d.Algorithm().FromBytes(dt); got != d {
		return nil, fmt.Errorf("blob %s is corrupt (content digest %s)", p, got)
	}
	return dt, nil
}

// resolveConfig follows an index (choosing platform) down to a manifest and
// returns its config blob.
func resolveConfig(dir string, desc ocispecs.Descriptor, platform ocispecs.Platform) ([]byte, error) {
	for range 4 { // nested indexes are legal but never deep
		dt, err := readBlob(dir, desc.Digest)
		if err != nil {
			return nil, err
		}
		var probe struct {
			MediaType string                `json:"mediaType"`
			Manifests []ocispecs.Descriptor `json:"manifests"`
			Config    *ocispecs.Descriptor  `json:"config"`
		}
		if err := json.Unmarshal(dt, &probe); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
		}
		if probe.Config != nil {
			return readBlob(dir, probe.Config.Digest)
		}
		next, ok := matchPlatform(probe.Manifests, platform)
		if !ok {
			return nil, fmt.Errorf("index %s has no image for %s/%s", desc.Digest, platform.OS, platform.Architecture)
		}
		desc = next
	}
	return nil, fmt.Errorf("index nesting too deep at %s", desc.Digest)
}

func matchPlatform(ms []ocispecs.Descriptor, p ocispecs.Platform) (ocispecs.Descriptor, bool) {
	for _, m := range ms {
		if m.Platform != nil && m.Platform.OS == p.OS && m.Platform.Architecture == p.Architecture {
			return m, true
		}
	}
	if len(ms) == 1 && ms[0].Platform == nil {
		return ms[0], true
	}
	return ocispecs.Descriptor{}, false
}
