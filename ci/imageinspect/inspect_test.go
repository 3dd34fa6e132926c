package imageinspect

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
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
	for _, r := range raw {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(r)), nil })
		require.NoError(t, err)
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "step " + string(rune('A'+len(raw)))}})
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
	assert.Equal(t, 6, got.Layers[0].Entries)

	var paths []string
	for _, f := range got.Files {
		paths = append(paths, f.Path)
	}
	assert.Equal(t, []string{"/app", "/app/main.py", "/cache", "/cache/c", "/etc", "/etc/os-release"}, paths)
	f, ok := got.File("/etc/os-release")
	require.True(t, ok)
	assert.Equal(t, int64(len("debian 12")), f.Size)
	assert.Equal(t, 2, f.Layer)
	app, ok := got.File("app/main.py")
	require.True(t, ok)
	assert.Equal(t, 1000, app.UID)
	assert.True(t, app.IsRegular())
	assert.Empty(t, got.Match("gcc*"), "whiteout removed the compiler")
	assert.Len(t, got.Match("*.py"), 1)
	assert.Len(t, got.Under("/cache"), 1)

	assert.Equal(t, "1000:1000", got.Config.Config.User)
	assert.Equal(t, "/opt/venv/bin:/usr/bin", got.Env()["PATH"])
	assert.Equal(t, 30*time.Second, got.Config.Config.Healthcheck.Interval)
	assert.Contains(t, got.Config.Config.ExposedPorts, "8000/tcp")
	assert.NotEmpty(t, got.Digest)
}

func TestDockerArchive(t *testing.T) {
	img, raw := testImage(t)
	p := filepath.Join(t.TempDir(), "img.tar")
	tag, err := name.NewTag("kidney_genetics_backend:latest")
	require.NoError(t, err)
	require.NoError(t, tarball.WriteToFile(p, tag, img))
	got, err := Inspect(p)
	require.NoError(t, err)
	check(t, got, raw)
	want, _ := img.Digest()
	assert.Equal(t, want.String(), got.Digest)
}

func TestOCIArchive(t *testing.T) {
	img, raw := testImage(t)
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	require.NoError(t, err)
	require.NoError(t, lp.AppendImage(img))
	p := filepath.Join(dir, "img.oci.tar")
	tarDir(t, filepath.Join(dir, "layout"), p)
	got, err := Inspect(p)
	require.NoError(t, err)
	check(t, got, raw)
}

func TestNotAnImage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "hello", Typeflag: tar.TypeReg}))
	require.NoError(t, tw.Close())
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
	_, err := Inspect(p)
	assert.ErrorContains(t, err, "neither manifest.json")

	require.NoError(t, os.WriteFile(p, []byte("not a tar at all, definitely not"), 0o644))
	_, err = Inspect(p)
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
