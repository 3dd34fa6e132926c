package baseimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/imageinspect"
)

var testCfg = Config{
	Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
	Cmd:          []string{"nginx", "-g", "daemon off;"},
	Entrypoint:   []string{"/docker-entrypoint.sh"},
	User:         "101",
	ExposedPorts: []string{"80/tcp", "443"},
	Volumes:      []string{"/data"},
	StopSignal:   "SIGQUIT",
}

// makeTree builds a small rootfs covering the cases a real one has.
func makeTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mk := func(rel string, mode os.FileMode, content string) {
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
		require.NoError(t, os.Chmod(p, mode)) // umask-independent
	}
	mk("usr/bin/tool", 0o755, "#!/bin/sh\necho tool\n")
	mk("usr/bin/su", 0o755|os.ModeSetuid, "setuid binary")
	mk("etc/passwd", 0o644, "root:x:0:0::/root:/bin/sh\n")
	mk("etc/nginx/nginx.conf", 0o600, "events {}\n")
	mk("proc/1/status", 0o444, "must not be archived")
	mk("dev/leftover", 0o644, "must not be archived")
	require.NoError(t, os.Symlink("usr/bin", filepath.Join(root, "bin")))
	require.NoError(t, os.Symlink("/usr/bin/tool", filepath.Join(root, "usr/bin/sh")))
	require.NoError(t, os.Link(filepath.Join(root, "usr/bin/tool"), filepath.Join(root, "usr/bin/tool2")))
	require.NoError(t, os.Mkdir(filepath.Join(root, "tmp"), 0o755))
	require.NoError(t, os.Chmod(filepath.Join(root, "tmp"), 0o777|os.ModeSticky))
	require.NoError(t, syscall.Mkfifo(filepath.Join(root, "tmp/fifo"), 0o600))
	// A file newer than the epoch must be clamped to it; an older one keeps its mtime.
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, os.Chtimes(filepath.Join(root, "etc/passwd"), old, old))
	if os.Geteuid() == 0 {
		require.NoError(t, os.Lchown(filepath.Join(root, "etc/nginx/nginx.conf"), 101, 102))
		require.NoError(t, syscall.Mknod(filepath.Join(root, "etc/nulldev"), syscall.S_IFCHR|0o666, int(1<<8|3)))
	}
	return root
}

// readLayer returns the layer's headers by name; sorted asks to check that
// entries come in sorted walk order (true for trees, not for tar inputs).
func readLayer(t *testing.T, img v1.Image, sorted bool) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1)
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	hdrs := map[string]*tar.Header{}
	var order []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		hdrs[h.Name] = h
		order = append(order, h.Name)
	}
	if sorted {
		// The test trees have no names where per-directory and whole-path order differ.
		assert.IsIncreasing(t, order, "entries must be in sorted walk order")
	}
	return hdrs
}

func TestBuildLayoutRoundTrip(t *testing.T) {
	root := makeTree(t)
	out := filepath.Join(t.TempDir(), "nginx")
	dgst, err := BuildLayout(root, out, "nginx", testCfg)
	require.NoError(t, err)

	// The index has exactly one manifest, annotated with the name.
	raw, err := os.ReadFile(filepath.Join(out, "index.json"))
	require.NoError(t, err)
	var idx v1.IndexManifest
	require.NoError(t, json.Unmarshal(raw, &idx))
	require.Len(t, idx.Manifests, 1)
	assert.Equal(t, "nginx", idx.Manifests[0].Annotations[imageinspect.RefNameAnnotation])
	assert.Equal(t, dgst, idx.Manifests[0].Digest)
	assert.Equal(t, types.OCIManifestSchema1, idx.Manifests[0].MediaType)

	img, desc, err := imageinspect.FromLayout(out, "nginx", nil)
	require.NoError(t, err)
	assert.Equal(t, dgst, desc.Digest)
	_, _, err = imageinspect.FromLayout(out, "python", nil)
	assert.ErrorContains(t, err, `no image named "python"`)

	cf, err := img.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, "linux", cf.OS)
	assert.Equal(t, "amd64", cf.Architecture)
	assert.Equal(t, DefaultEpoch, cf.Created.Time.UTC())
	assert.Equal(t, testCfg.Env, cf.Config.Env)
	assert.Equal(t, testCfg.Cmd, cf.Config.Cmd)
	assert.Equal(t, testCfg.Entrypoint, cf.Config.Entrypoint)
	assert.Equal(t, "101", cf.Config.User)
	assert.Equal(t, "SIGQUIT", cf.Config.StopSignal)
	assert.Equal(t, map[string]struct{}{"80/tcp": {}, "443/tcp": {}}, cf.Config.ExposedPorts)
	assert.Equal(t, map[string]struct{}{"/data": {}}, cf.Config.Volumes)
	require.Len(t, cf.RootFS.DiffIDs, 1)
	require.Len(t, cf.History, 1)

	hdrs := readLayer(t, img, true)
	get := func(n string) *tar.Header {
		h, ok := hdrs[n]
		require.Truef(t, ok, "layer lacks %q; has %v", n, keys(hdrs))
		return h
	}
	assert.Equal(t, int64(0o755), get("usr/bin/tool").Mode)
	assert.Equal(t, int64(0o4755), get("usr/bin/su").Mode, "setuid bit kept")
	assert.Equal(t, int64(0o1777), get("tmp/").Mode, "sticky bit kept")
	assert.Equal(t, byte(tar.TypeDir), get("tmp/").Typeflag)
	assert.Equal(t, byte(tar.TypeFifo), get("tmp/fifo").Typeflag)
	assert.Equal(t, byte(tar.TypeSymlink), get("bin").Typeflag)
	assert.Equal(t, "usr/bin", get("bin").Linkname)
	assert.Equal(t, "/usr/bin/tool", get("usr/bin/sh").Linkname)
	assert.Equal(t, byte(tar.TypeLink), get("usr/bin/tool2").Typeflag)
	assert.Equal(t, "usr/bin/tool", get("usr/bin/tool2").Linkname)
	assert.Equal(t, time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC), get("etc/passwd").ModTime.UTC(), "older mtime kept")
	assert.Equal(t, DefaultEpoch, get("usr/bin/tool").ModTime.UTC(), "newer mtime clamped")
	assert.Empty(t, get("usr/bin/tool").Uname, "no user names: numeric owners only")
	// /proc and /dev stay as empty directories.
	assert.Equal(t, byte(tar.TypeDir), get("proc/").Typeflag)
	assert.Equal(t, byte(tar.TypeDir), get("dev/").Typeflag)
	for n := range hdrs {
		assert.NotRegexp(t, `^(proc|dev)/.+`, n, "kernel filesystem contents must not be archived")
	}
	if os.Geteuid() == 0 {
		assert.Equal(t, 101, get("etc/nginx/nginx.conf").Uid)
		assert.Equal(t, 102, get("etc/nginx/nginx.conf").Gid)
		assert.Equal(t, int64(0o600), get("etc/nginx/nginx.conf").Mode)
		assert.NotContains(t, hdrs, "etc/nulldev", "device nodes are skipped")
	} else {
		t.Log("not root: owner and device-node checks need root and were not run")
	}
	assert.Equal(t, 0, get("usr/bin/tool").Uid)

	// Replacing the layout is refused (the CLI stages and swaps instead).
	_, err = BuildLayout(root, out, "nginx", testCfg)
	assert.ErrorContains(t, err, "already exists")
}

func TestBuildLayoutDeterministic(t *testing.T) {
	root := makeTree(t)
	base := t.TempDir()
	d1, err := BuildLayout(root, filepath.Join(base, "a"), "x", testCfg)
	require.NoError(t, err)
	// Touch everything: mtimes newer than the epoch must not change the digest.
	now := time.Now()
	require.NoError(t, filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.Mode()&os.ModeSymlink != 0 || p == filepath.Join(root, "etc/passwd") {
			return err
		}
		return os.Chtimes(p, now, now)
	}))
	d2, err := BuildLayout(root, filepath.Join(base, "b"), "x", testCfg)
	require.NoError(t, err)
	assert.Equal(t, d1, d2, "same tree and config must give the same manifest digest")

	// Content changes must change it.
	require.NoError(t, os.WriteFile(filepath.Join(root, "usr/bin/tool"), []byte("changed"), 0o755))
	d3, err := BuildLayout(root, filepath.Join(base, "c"), "x", testCfg)
	require.NoError(t, err)
	assert.NotEqual(t, d1, d3)

	// So must config changes.
	cfg := testCfg
	cfg.Cmd = []string{"sh"}
	d4, err := BuildLayout(root, filepath.Join(base, "d"), "x", cfg)
	require.NoError(t, err)
	assert.NotEqual(t, d3, d4)
}

func TestBuildLayoutFromTar(t *testing.T) {
	// A rootfs given as a tar (with "./" names, a proc entry, a device) is normalised.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		require.NoError(t, tw.WriteHeader(h))
		_, err := tw.Write([]byte(body))
		require.NoError(t, err)
	}
	now := time.Now()
	add(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now}, "")
	add(&tar.Header{Name: "./etc", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now}, "")
	add(&tar.Header{Name: "./etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644, Uid: 7, Gid: 8, Uname: "x", ModTime: now}, "h\n")
	add(&tar.Header{Name: "./proc/1", Typeflag: tar.TypeDir, Mode: 0o555, ModTime: now}, "")
	add(&tar.Header{Name: "./dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: now}, "")
	add(&tar.Header{Name: "./etc/hn", Typeflag: tar.TypeLink, Linkname: "./etc/hostname", ModTime: now}, "")
	require.NoError(t, tw.Close())
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	require.NoError(t, os.WriteFile(tarPath, buf.Bytes(), 0o644))

	out := filepath.Join(t.TempDir(), "l")
	_, err := BuildLayout(tarPath, out, "t", testCfg)
	require.NoError(t, err)
	img, _, err := imageinspect.FromLayout(out, "", nil)
	require.NoError(t, err)
	hdrs := readLayer(t, img, false)
	assert.ElementsMatch(t, []string{"etc/", "etc/hostname", "etc/hn"}, keys(hdrs))
	assert.Equal(t, 7, hdrs["etc/hostname"].Uid)
	assert.Empty(t, hdrs["etc/hostname"].Uname)
	assert.Equal(t, DefaultEpoch, hdrs["etc/hostname"].ModTime.UTC())
	assert.Equal(t, "etc/hostname", hdrs["etc/hn"].Linkname)
}

func TestWriteDockerArchive(t *testing.T) {
	root := makeTree(t)
	dir := t.TempDir()
	lay := filepath.Join(dir, "postgres")
	_, err := BuildLayout(root, lay, "postgres", testCfg)
	require.NoError(t, err)
	out := filepath.Join(dir, "postgres.tar")
	require.NoError(t, WriteDockerArchive(lay, "", "kidney-base/postgres:offline", out))

	// docker load reads manifest.json's RepoTags, Config and Layers.
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(out) })
	require.NoError(t, err)
	require.Len(t, m, 1)
	assert.Equal(t, []string{"kidney-base/postgres:offline"}, m[0].RepoTags)
	require.Len(t, m[0].Layers, 1)

	tag, err := name.NewTag("kidney-base/postgres:offline")
	require.NoError(t, err)
	loaded, err := tarball.ImageFromPath(out, &tag)
	require.NoError(t, err)
	orig, _, err := imageinspect.FromLayout(lay, "postgres", nil)
	require.NoError(t, err)
	want, err := orig.ConfigName()
	require.NoError(t, err)
	got, err := loaded.ConfigName()
	require.NoError(t, err)
	assert.Equal(t, want, got, "same config (and so the same diff IDs) after the round trip")
	hdrs := readLayer(t, loaded, true)
	assert.Contains(t, hdrs, "usr/bin/su")

	assert.Error(t, WriteDockerArchive(lay, "", "Not A Tag!", filepath.Join(dir, "x.tar")))
	_, statErr := os.Stat(filepath.Join(dir, "x.tar.tmp"))
	assert.True(t, os.IsNotExist(statErr), "no partial tarball left behind")
}

func keys(m map[string]*tar.Header) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
