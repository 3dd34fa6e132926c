package imageinspect

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type entry struct {
	name string
	body string
	dir  bool
	uid  int
}

func layerTar(t *testing.T, es ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: 0o644, Uid: e.uid, Gid: e.uid, ModTime: time.Unix(0, 0)}
		if e.dir {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		require.NoError(t, tw.WriteHeader(h))
		if !e.dir {
			_, err := tw.Write([]byte(e.body))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

// testImage: three layers exercising a whiteout, an opaque directory and a
// file replaced in a later layer.
func testImage(t *testing.T) (v1.Image, [][]byte) {
	t.Helper()
	raw := [][]byte{
		layerTar(t,
			entry{name: "etc/", dir: true},
			entry{name: "etc/os-release", body: "debian"},
			entry{name: "usr/bin/gcc", body: "elf"},
			entry{name: "cache/", dir: true},
			entry{name: "cache/a", body: "aaaa"},
			entry{name: "cache/b", body: "bbbb"},
		),
		layerTar(t,
			entry{name: "usr/bin/.wh.gcc"},
			entry{name: "cache/", dir: true},
			entry{name: "cache/.wh..wh..opq"},
			entry{name: "cache/c", body: "c"},
		),
		layerTar(t,
			entry{name: "app/", dir: true, uid: 1000},
			entry{name: "app/main.py", body: "print('hi')\n", uid: 1000},
			entry{name: "etc/os-release", body: "debian 12"},
		),
	}
	img := empty.Image
	for i, r := range raw {
		l, err := tarball.LayerFromOpener(opener(r))
		require.NoError(t, err)
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "step " + string(rune('A'+i))}})
		require.NoError(t, err)
	}
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	cf = cf.DeepCopy()
	cf.Config.User = "1000:1000"
	cf.Config.Env = []string{"PATH=/opt/venv/bin:/usr/bin", "LANG=C.UTF-8"}
	cf.Config.Healthcheck = &v1.HealthConfig{Test: []string{"CMD", "curl", "-f", "http://127.0.0.1:8000/api/health"}, Interval: 30 * time.Second}
	cf.Config.ExposedPorts = map[string]struct{}{"8000/tcp": {}}
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": "t"}
	img, err = mutate.ConfigFile(img, cf)
	require.NoError(t, err)
	return img, raw
}

func opener(b []byte) tarball.Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

func check(t *testing.T, got *Image, raw [][]byte) {
	t.Helper()
	require.Len(t, got.Layers, 3)
	var sumC, sumU int64
	for i, l := range got.Layers {
		// Uncompressed is the exact tar stream size; compressed is the
		// blob size, smaller for these compressible tars.
		assert.Equal(t, int64(len(raw[i])), l.Uncompressed, "layer %d", i)
		assert.Greater(t, l.Compressed, int64(0))
		assert.Less(t, l.Compressed, l.Uncompressed)
		sumC += l.Compressed
		sumU += l.Uncompressed
	}
	assert.Equal(t, sumC, got.Compressed)
	assert.Equal(t, sumU, got.Uncompressed)
	assert.Equal(t, "step A", got.Layers[0].CreatedBy)
	assert.Equal(t, "step C", got.Layers[2].CreatedBy)

	// Every layer's entries, whiteout markers and later-deleted files included.
	require.Len(t, got.Layers[0].Entries, 6)
	assert.Equal(t, "/usr/bin/gcc", got.Layers[0].Entries[2].Path)
	assert.Equal(t, "/usr/bin/.wh.gcc", got.Layers[1].Entries[0].Path)
	assert.Equal(t, 1, got.Layers[1].Entries[0].Layer)

	// The final filesystem: the whiteout removed gcc, the opaque directory
	// hid a and b, the last layer's os-release won.
	assert.Equal(t, []string{"/app", "/app/main.py", "/cache", "/cache/c", "/etc", "/etc/os-release"}, paths(got))
	assert.Equal(t, int64(len("debian 12")), got.Files["/etc/os-release"].Size)
	app := got.Files["/app/main.py"]
	assert.Equal(t, 1000, app.UID)
	assert.Equal(t, byte(tar.TypeReg), app.Type)
	assert.Equal(t, byte(tar.TypeDir), got.Files["/cache"].Type)

	assert.Equal(t, "1000:1000", got.Config.Config.User)
	assert.Contains(t, got.Config.Config.Env, "PATH=/opt/venv/bin:/usr/bin")
	assert.Equal(t, 30*time.Second, got.Config.Config.Healthcheck.Interval)
	assert.Contains(t, got.Config.Config.ExposedPorts, "8000/tcp")
}

// keepEntries keeps every layer's entries without judging any content.
func keepEntries(string, []byte) []string { return nil }

var all = Options{Sizes: SizesFromBlobs, Files: true, Scan: keepEntries}

// paths lists the final filesystem, sorted.
func paths(img *Image) []string {
	var out []string
	for p := range img.Files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func TestDockerArchive(t *testing.T) {
	img, raw := testImage(t)
	p := filepath.Join(t.TempDir(), "img.tar")
	tag, err := name.NewTag("kidney_genetics_backend:latest")
	require.NoError(t, err)
	require.NoError(t, tarball.WriteToFile(p, tag, img))
	got, err := ReadFile(p, all)
	require.NoError(t, err)
	check(t, got, raw)

	// `docker save` stores layers uncompressed: measured in the same pass,
	// the sizes are go-containerregistry's own gzip of them, give or take.
	measured, err := ReadFile(p, Options{Sizes: SizesMeasured, Files: true, Scan: keepEntries})
	require.NoError(t, err)
	check(t, measured, raw)
	assert.InDelta(t, got.Compressed, measured.Compressed, float64(got.Compressed)*0.1+64)

	// Asked for less, it reads less.
	bare, err := ReadFile(p, Options{})
	require.NoError(t, err)
	assert.Nil(t, bare.Files)
	assert.Nil(t, bare.Layers[0].Entries)
	assert.Zero(t, bare.Compressed)
	assert.Equal(t, got.Uncompressed, bare.Uncompressed)

	// A layer whose size is known is not read: the known figure is taken
	// (a wrong one shows that), the others are measured.
	first := got.Layers[0]
	known, err := ReadFile(p, Options{Sizes: SizesFromBlobs, Uncompressed: map[string]int64{first.DiffID: 7}})
	require.NoError(t, err)
	assert.Equal(t, int64(7), known.Layers[0].Uncompressed)
	assert.Equal(t, first.Compressed, known.Layers[0].Compressed)
	assert.Equal(t, got.Layers[1].Uncompressed, known.Layers[1].Uncompressed)
	assert.Equal(t, got.Uncompressed-first.Uncompressed+7, known.Uncompressed)
	// With a scan every layer is read whatever is known.
	scanned, err := ReadFile(p, Options{Scan: keepEntries, Uncompressed: map[string]int64{first.DiffID: 7}})
	require.NoError(t, err)
	assert.Equal(t, first.Uncompressed, scanned.Layers[0].Uncompressed)
}

// ociTar writes img as an OCI layout in a tar (BuildKit's oci exporter's shape).
func ociTar(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	require.NoError(t, err)
	require.NoError(t, lp.AppendImage(img))
	p := filepath.Join(dir, "img.oci.tar")
	tarDir(t, filepath.Join(dir, "layout"), p)
	return p
}

func TestOCIArchive(t *testing.T) {
	img, raw := testImage(t)
	got, err := ReadFile(ociTar(t, img), all)
	require.NoError(t, err)
	check(t, got, raw)
}

// A file or link that replaces a directory replaces its whole tree, and a
// directory deleted by a whiteout takes its contents with it.
func TestFinalFilesystemReplacements(t *testing.T) {
	img := empty.Image
	for _, es := range [][]entry{
		{{name: "a/", dir: true}, {name: "a/x", body: "x"}, {name: "b/", dir: true}, {name: "b/y", body: "y"}},
		{{name: "a", body: "now a file"}, {name: ".wh.b"}},
	} {
		l, err := tarball.LayerFromOpener(opener(layerTar(t, es...)))
		require.NoError(t, err)
		img, err = mutate.AppendLayers(img, l)
		require.NoError(t, err)
	}
	got, err := Read(img, Options{Files: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"/a"}, paths(got))
	assert.Equal(t, byte(tar.TypeReg), got.Files["/a"].Type)
}

func TestScanSeesContentOfEveryLayer(t *testing.T) {
	img, _ := testImage(t)
	seen := map[string]string{}
	got, err := Read(img, Options{Scan: func(p string, b []byte) []string {
		seen[p] = string(b)
		if strings.Contains(string(b), "debian") {
			return []string{"mentions debian"}
		}
		return nil
	}})
	require.NoError(t, err)
	assert.Equal(t, "elf", seen["/usr/bin/gcc"], "deleted later, still scanned")
	assert.Equal(t, "aaaa", seen["/cache/a"])
	assert.Equal(t, []string{"mentions debian"}, got.Layers[0].Entries[1].Notes)
	assert.Equal(t, []string{"mentions debian"}, got.Layers[2].Entries[2].Notes)
	assert.Empty(t, got.Layers[2].Entries[1].Notes)
}

func TestLayoutByNameAndPlatform(t *testing.T) {
	img, _ := testImage(t)
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	require.NoError(t, err)
	require.NoError(t, lp.AppendImage(img, layout.WithAnnotations(map[string]string{RefNameAnnotation: "python"})))
	// Another image, wrapped in a multi-platform index as registries serve them.
	amd, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{Architecture: "amd64", OS: "linux", Config: v1.Config{Env: []string{"WHO=amd64"}}})
	require.NoError(t, err)
	arm, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{Architecture: "arm64", OS: "linux", Config: v1.Config{Env: []string{"WHO=arm64"}}})
	require.NoError(t, err)
	multi := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	require.NoError(t, lp.AppendIndex(multi, layout.WithAnnotations(map[string]string{RefNameAnnotation: "node"})))

	py, desc, err := FromLayout(dir, "python", nil)
	require.NoError(t, err)
	want, _ := img.Digest()
	assert.Equal(t, want, desc.Digest)
	cf, err := py.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, "1000:1000", cf.Config.User)

	node, desc, err := FromLayout(dir, "node", &v1.Platform{OS: "linux", Architecture: "amd64"})
	require.NoError(t, err)
	wantIdx, _ := multi.Digest()
	assert.Equal(t, wantIdx, desc.Digest, "the index.json entry is what a build pins")
	cf, err = node.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, []string{"WHO=amd64"}, cf.Config.Env)

	_, _, err = FromLayout(dir, "node", &v1.Platform{OS: "linux", Architecture: "riscv64"})
	assert.ErrorContains(t, err, "no image for linux/riscv64")
	_, _, err = FromLayout(dir, "nginx", nil)
	assert.ErrorContains(t, err, `no image named "nginx"`)
	assert.ErrorContains(t, err, `"node" "python"`)
	_, _, err = FromLayout(dir, "", nil)
	assert.ErrorContains(t, err, "2 images match")

	// A damaged blob is reported as such.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "blobs", "sha256", wantIdx.Hex), []byte(`{"manifests":[]}`), 0o644))
	_, _, err = FromLayout(dir, "node", &v1.Platform{OS: "linux", Architecture: "amd64"})
	assert.ErrorContains(t, err, "is corrupt")
}

func TestNotAnImage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "hello", Typeflag: tar.TypeReg}))
	require.NoError(t, tw.Close())
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
	_, err := ReadFile(p, Options{})
	assert.ErrorContains(t, err, "neither manifest.json")

	require.NoError(t, os.WriteFile(p, []byte("not a tar at all, definitely not"), 0o644))
	_, err = ReadFile(p, Options{})
	assert.Error(t, err)
}

func tarDir(t *testing.T, src, out string) {
	t.Helper()
	f, err := os.Create(out)
	require.NoError(t, err)
	defer f.Close()
	tw := tar.NewWriter(f)
	require.NoError(t, filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == src {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	}))
	require.NoError(t, tw.Close())
}

// VerifyDiffIDs ties what was read to the config: an archive whose layer is
// not the one its config names (a swapped blob, or a file that is not the
// image the engine holds) fails, naming the layer; a true one reads as before.
func TestVerifyDiffIDs(t *testing.T) {
	img, raw := testImage(t)
	good := ociTar(t, img)
	for _, opt := range []Options{{VerifyDiffIDs: true}, {VerifyDiffIDs: true, Files: true, Scan: keepEntries, Sizes: SizesFromBlobs}} {
		got, err := ReadFile(good, opt)
		require.NoError(t, err)
		assert.Len(t, got.Layers, len(raw))
		// A known size does not spare a layer the reading that verifies it.
		first := got.Layers[0]
		opt.Uncompressed = map[string]int64{first.DiffID: 7}
		again, err := ReadFile(good, opt)
		require.NoError(t, err)
		assert.Equal(t, first.Uncompressed, again.Layers[0].Uncompressed)
	}

	// The second layer's diff ID in the config replaced by the third's.
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[1] = cf.RootFS.DiffIDs[2]
	bad, err := mutate.ConfigFile(img, cf)
	require.NoError(t, err)
	badTar := ociTar(t, bad)
	_, err = ReadFile(badTar, Options{VerifyDiffIDs: true, Files: true, Scan: keepEntries})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "layer 1")
	assert.Contains(t, err.Error(), "not the diff ID "+cf.RootFS.DiffIDs[1].String())
	// Unverified, the same file reads without complaint: the option is what catches it.
	_, err = ReadFile(badTar, Options{Files: true, Scan: keepEntries})
	require.NoError(t, err)
}
