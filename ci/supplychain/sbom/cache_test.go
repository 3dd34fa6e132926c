package sbom

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func randomArchive(t *testing.T) string {
	t.Helper()
	img, err := random.Image(512, 2)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "img.tar")
	ref, err := name.NewTag("kidney_genetics_backend:t")
	require.NoError(t, err)
	require.NoError(t, tarball.WriteToFile(p, ref, img))
	return p
}

func writeFile(t *testing.T, p, s string) string {
	t.Helper()
	require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
	return p
}

// The key changes with each thing that decides the documents, and only with them.
func TestCacheKeyNamesWhatDecidesTheDocuments(t *testing.T) {
	dir := t.TempDir()
	tool := writeFile(t, filepath.Join(dir, "tool"), "binary one")
	otherTool := writeFile(t, filepath.Join(dir, "tool2"), "binary two")
	img, other := randomArchive(t), randomArchive(t)
	// The same image in another file: the same key.
	copied := filepath.Join(dir, "copy.tar")
	require.NoError(t, copyFile(img, copied))
	c := Cache{Dir: t.TempDir()}
	key := func(tool, svc, tb, name, version string) string {
		k, err := c.Key(tool, svc, tb, name, version)
		require.NoError(t, err)
		return k
	}
	base := key(tool, "backend", img, "kidney_genetics_backend", "sha256:1")
	assert.Equal(t, base, key(tool, "backend", copied, "kidney_genetics_backend", "sha256:1"))
	for what, k := range map[string]string{
		"tool binary": key(otherTool, "backend", img, "kidney_genetics_backend", "sha256:1"),
		"service":     key(tool, "frontend", img, "kidney_genetics_backend", "sha256:1"),
		"image":       key(tool, "backend", other, "kidney_genetics_backend", "sha256:1"),
		"name":        key(tool, "backend", img, "other", "sha256:1"),
		"version":     key(tool, "backend", img, "kidney_genetics_backend", "sha256:2"),
	} {
		assert.NotEqual(t, base, k, "another %s, the same key", what)
	}
	_, err := c.Key(tool, "backend", filepath.Join(dir, "missing.tar"), "n", "v")
	assert.Error(t, err)
}

func TestCacheGivesBackWhatWasPut(t *testing.T) {
	c := Cache{Dir: t.TempDir()}
	_, _, ok, err := c.Get("k1", t.TempDir())
	require.NoError(t, err)
	assert.False(t, ok, "an empty cache has nothing")

	made := t.TempDir()
	docs := []string{
		writeFile(t, filepath.Join(made, "backend.syft.json"), `{"syft":1}`),
		writeFile(t, filepath.Join(made, "backend.spdx.json"), `{"spdx":1}`),
	}
	require.NoError(t, c.Put("k1", docs, []byte(`{"packages":3}`)))
	out := filepath.Join(t.TempDir(), "sbom")
	files, meta, ok, err := c.Get("k1", out)
	require.NoError(t, err)
	require.True(t, ok)
	assert.JSONEq(t, `{"packages":3}`, string(meta))
	// In the order they were put, which the summary's links follow.
	assert.Equal(t, []string{filepath.Join(out, "backend.syft.json"), filepath.Join(out, "backend.spdx.json")}, files)
	b, err := os.ReadFile(filepath.Join(out, "backend.syft.json"))
	require.NoError(t, err)
	assert.Equal(t, `{"syft":1}`, string(b))
	left, err := filepath.Glob(filepath.Join(c.Dir, ".partial-*"))
	require.NoError(t, err)
	assert.Empty(t, left)
	// Put again (another run made the same entry meanwhile): the entry stays whole.
	require.NoError(t, c.Put("k1", docs[:1], []byte(`{"packages":3}`)))
	files, _, ok, err = c.Get("k1", t.TempDir())
	require.NoError(t, err)
	require.True(t, ok)
	assert.Len(t, files, 2)
	// An entry without its index is no entry, and the next Put replaces it.
	require.NoError(t, os.Remove(filepath.Join(c.Dir, "k1", indexFile)))
	_, _, ok, err = c.Get("k1", t.TempDir())
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, c.Put("k1", docs[:1], []byte(`{"packages":1}`)))
	files, meta, ok, err = c.Get("k1", t.TempDir())
	require.NoError(t, err)
	require.True(t, ok)
	assert.Len(t, files, 1)
	assert.JSONEq(t, `{"packages":1}`, string(meta))
}

// The cache keeps its Keep most recently used entries.
func TestCacheKeepsTheMostRecentlyUsed(t *testing.T) {
	c := Cache{Dir: t.TempDir(), Keep: 2}
	doc := writeFile(t, filepath.Join(t.TempDir(), "x.spdx.json"), "{}")
	old := time.Now().Add(-time.Hour)
	for i, k := range []string{"a", "b"} {
		require.NoError(t, c.Put(k, []string{doc}, []byte("{}")))
		at := old.Add(time.Duration(i) * time.Minute)
		require.NoError(t, os.Chtimes(filepath.Join(c.Dir, k), at, at))
	}
	// "a" is the oldest but used now; "b" is the one to go.
	_, _, ok, err := c.Get("a", t.TempDir())
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, c.Put("c", []string{doc}, []byte("{}")))
	for k, want := range map[string]bool{"a": true, "b": false, "c": true} {
		_, _, ok, err := c.Get(k, t.TempDir())
		require.NoError(t, err)
		assert.Equal(t, want, ok, "entry %s", k)
	}
}
