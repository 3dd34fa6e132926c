package llbgraph

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kidney-genetics/kidney-genetics-db/ci/imageinspect"
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
const RefName = imageinspect.RefNameAnnotation

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
	if _, err := os.Stat(idxPath); errors.Is(err, fs.ErrNotExist) {
		return Layout{}, fmt.Errorf("%w: %s not found; run scripts/make-base-images.sh (or pass the directory holding the layouts with --base-cache)", ErrMissingLayout, idxPath)
	}
	img, desc, err := imageinspect.FromLayout(dir, name, &v1.Platform{OS: platform.OS, Architecture: platform.Architecture})
	if err != nil {
		return Layout{}, fmt.Errorf("base image %s: %w; remake it with scripts/make-base-images.sh", name, err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return Layout{}, fmt.Errorf("base layout %s: %w", dir, err)
	}
	return Layout{Kind: kind, Dir: dir, StoreID: name, Digest: digest.Digest(desc.Digest.String()), Config: cfg}, nil
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
