package daggertest_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/transfer/archive"
	"github.com/containerd/containerd/v2/plugins/content/local"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kidney-genetics/kidney-genetics-db/ci/baseimage"
)

// The offline --bases recipe in docs/dagger.md, end to end without an
// engine: a layout written by ci/baseimage (as scripts/make-base-images.sh
// does), tarred with the documented command, read with the importer Dagger
// v0.20.0's Container.import uses (containerd's transfer/archive into a
// content store), and the manifest picked by tag the way its resolveIndex
// does (the org.opencontainers.image.ref.name annotation).
func TestBasesTarballImportsLikeDagger(t *testing.T) {
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "os-release"), []byte("ID=debian\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(dir, "base", "postgres")
	if err := os.MkdirAll(filepath.Dir(layout), 0o755); err != nil {
		t.Fatal(err)
	}
	manifest, err := baseimage.BuildLayout(rootfs, layout, "postgres", baseimage.Config{Cmd: []string{"postgres"}, ExposedPorts: []string{"5432/tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "postgres.tar")
	if out, err := exec.Command("tar", "-C", layout, "-cf", tarball, "oci-layout", "index.json", "blobs").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}

	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	store, err := local.NewStore(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	idx, err := archive.NewImageImportStream(f, "").Import(ctx, store)
	if err != nil {
		t.Fatalf("import like Container.import: %v", err)
	}
	if idx.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("import returned a %s, Dagger expects an index", idx.MediaType)
	}
	blob, err := content.ReadBlob(ctx, store, idx)
	if err != nil {
		t.Fatal(err)
	}
	var index ocispec.Index
	if err := json.Unmarshal(blob, &index); err != nil {
		t.Fatal(err)
	}
	var found *ocispec.Descriptor
	for i, m := range index.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == "postgres" && m.MediaType == ocispec.MediaTypeImageManifest {
			found = &index.Manifests[i]
		}
	}
	if found == nil {
		t.Fatalf("no manifest tagged postgres in %s", blob)
	}
	if found.Digest.String() != manifest.String() {
		t.Errorf("tag postgres selects %s, ci/baseimage wrote %s", found.Digest, manifest)
	}
	if _, err := content.ReadBlob(ctx, store, *found); err != nil {
		t.Errorf("the selected manifest did not reach the store: %v", err)
	}
}
