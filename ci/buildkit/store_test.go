package buildkit

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images/archive"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// storeImage writes an image of layers of the given sizes into a blob store
// in dir and returns its manifest.
func storeImage(t *testing.T, dir string, sizes ...int) (content.Store, ocispecs.Descriptor) {
	t.Helper()
	ctx := context.Background()
	cs, err := openStore(dir)
	require.NoError(t, err)
	put := func(mediaType string, b []byte) ocispecs.Descriptor {
		d := ocispecs.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
		require.NoError(t, content.WriteBlob(ctx, cs, d.Digest.String(), bytes.NewReader(b), d))
		return d
	}
	var layers []ocispecs.Descriptor
	var diffIDs []digest.Digest
	for _, n := range sizes {
		// Seeded by the size: two layers of one size are the same layer.
		rng := rand.New(rand.NewPCG(uint64(n), 0))
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		layers = append(layers, put(ocispecs.MediaTypeImageLayerGzip, b))
		diffIDs = append(diffIDs, digest.FromBytes(b))
	}
	cfg, err := json.Marshal(ocispecs.Image{Platform: ocispecs.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispecs.RootFS{Type: "layers", DiffIDs: diffIDs}})
	require.NoError(t, err)
	m, err := json.Marshal(ocispecs.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispecs.MediaTypeImageManifest,
		Config: put(ocispecs.MediaTypeImageConfig, cfg), Layers: layers,
	})
	require.NoError(t, err)
	return cs, put(ocispecs.MediaTypeImageManifest, m)
}

// The docker-archive with the layers spliced in from the store is byte for
// byte what containerd's exporter writes alone (BuildKit's docker export;
// TestExportSendsOnlyWhatTheStoreLacks compares with the daemon's own).
func TestDockerArchiveIsTheExportersByteForByte(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// Sizes off the 512-byte block, one on it, an empty layer and a repeated one.
	cs, manifest := storeImage(t, dir, 70_001, 1024, 0, 3, 70_001)
	names := []string{"docker.io/library/kidney_genetics_backend:t1"}

	var want bytes.Buffer
	require.NoError(t, archive.Export(ctx, cs, &want, archive.WithManifest(manifest, names...)))
	out := filepath.Join(t.TempDir(), "backend.tar")
	// Into a new path, then over the previous build's tarball.
	require.NoError(t, os.WriteFile(out, []byte("the previous build"), 0o644))
	for range 2 {
		require.NoError(t, writeDockerArchive(ctx, cs, dir, manifest, names, out))
		got, err := os.ReadFile(out)
		require.NoError(t, err)
		require.Equal(t, want.Len(), len(got), "size of the archive")
		assert.True(t, bytes.Equal(want.Bytes(), got), "the archive differs from containerd's export")
		left, err := filepath.Glob(out + ".*")
		require.NoError(t, err)
		assert.Empty(t, left, "no partial or old tarball is left")
	}
}

// A layer the store lost or that no longer has its size fails the write,
// naming the blob, and leaves no tarball.
func TestDockerArchiveRefusesADamagedStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cs, manifest := storeImage(t, dir, 4096)
	layers, err := layerDescriptors(ctx, cs, manifest)
	require.NoError(t, err)
	var layer digest.Digest
	for d := range layers {
		layer = d
	}
	file := filepath.Join(dir, "blobs", "sha256", layer.Encoded())
	require.NoError(t, os.Chmod(file, 0o644))
	require.NoError(t, os.Truncate(file, 100))

	out := filepath.Join(t.TempDir(), "backend.tar")
	err = writeDockerArchive(ctx, cs, dir, manifest, nil, out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "blobs/sha256/"+layer.Encoded()+": wrote 100 bytes, the descriptor says 4096")
	assert.NoFileExists(t, out)
	assert.NoFileExists(t, out+".partial")
}
