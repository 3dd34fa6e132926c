package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/attest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/budget"
	"github.com/kidney-genetics/kidney-genetics-db/ci/buildkit"
	"github.com/kidney-genetics/kidney-genetics-db/ci/llbgraph"
	"github.com/kidney-genetics/kidney-genetics-db/ci/publish"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

func TestBuildFlagErrors(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	err := runBuild(ctx, []string{"--profile", "airgapped"}, &out, os.Stderr)
	assert.ErrorContains(t, err, `unknown profile "airgapped"`)

	err = runBuild(ctx, []string{"--images", "backend,db"}, &out, os.Stderr)
	assert.ErrorContains(t, err, `unknown image "db"`)

	err = runBuild(ctx, []string{"--created", "yesterday", "--budgets", "none"}, &out, os.Stderr)
	assert.ErrorContains(t, err, "is not an RFC 3339 time")

	// A malformed budgets file fails before any daemon is contacted.
	bad := filepath.Join(t.TempDir(), "budgets.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("offline:\n  backend:\n    compressed: lots\n"), 0o644))
	err = runBuild(ctx, []string{"--budgets", bad, "--buildkit-host", "unix:///nonexistent.sock"}, &out, os.Stderr)
	assert.ErrorContains(t, err, bad+":3: offline.backend.compressed")

	err = runBuild(ctx, []string{"--budgets", "none", "--buildkit-host", "unix://" + filepath.Join(t.TempDir(), "no.sock")}, &out, os.Stderr)
	assert.ErrorContains(t, err, "scripts/engines/buildkitd.sh start or set BUILDKIT_HOST")
}

// TestBuildOverBudget runs the whole command on a real buildkitd: the
// frontend image (the quicker one) against a budget it cannot meet. The
// command must fail, and still leave the tarball, build.json and sizes.md.
func TestBuildOverBudget(t *testing.T) {
	ctx, root := needBuilder(t, "frontend")

	dir := t.TempDir()
	budgets := filepath.Join(dir, "budgets.yaml")
	require.NoError(t, os.WriteFile(budgets, []byte("offline:\n  frontend:\n    compressed: 1kB\n    uncompressed: 1GB\n"), 0o644))
	var out bytes.Buffer
	err := runBuild(ctx, []string{
		"--profile", "offline", "--images", "frontend", "--repo", root,
		"--out", filepath.Join(dir, "images"), "--budgets", budgets, "--progress", "quiet",
		"--tag", "kgci-test", "--revision", "0123456789abcdef0123456789abcdef01234567", "--created", "2026-01-02T03:04:05Z",
	}, &out, os.Stderr)
	require.Error(t, err)
	assert.True(t, errors.Is(err, budget.ErrOverBudget), "%v", err)
	assert.Contains(t, out.String(), "| frontend | compressed |")
	assert.Contains(t, out.String(), "**FAIL**")

	var rep buildReport
	dt, err := os.ReadFile(filepath.Join(dir, "build.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(dt, &rep))
	assert.Equal(t, "offline", rep.Profile)
	assert.Equal(t, "0123456789abcdef0123456789abcdef01234567", rep.Revision)
	require.Len(t, rep.Images, 1)
	im := rep.Images[0]
	assert.Equal(t, "kidney_genetics_frontend:kgci-test", im.Tag)
	assert.Equal(t, "101:101", im.User)
	assert.Greater(t, im.Compressed, int64(1000))
	assert.Greater(t, im.Uncompressed, im.Compressed)
	require.NotNil(t, rep.BudgetPass)
	assert.False(t, *rep.BudgetPass)
	require.Len(t, rep.Verdicts, 2)
	assert.False(t, rep.Verdicts[0].Pass)
	assert.True(t, rep.Verdicts[1].Pass)
	_, err = os.Stat(im.Tarball)
	assert.NoError(t, err)
	md, err := os.ReadFile(filepath.Join(dir, "sizes.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "| frontend | uncompressed |")
}

// needBuilder skips (fails under KGCI_E2E=1) unless buildkitd answers and the
// offline bases of image are there; it returns a context bounded for a build
// and the repository root.
func needBuilder(t *testing.T, image string) (context.Context, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	t.Cleanup(cancel)
	c, err := buildkit.Connect(ctx, buildkit.Addr(), buildkit.TLS{})
	if err != nil {
		skipUnlessE2E(t, "no daemon: %v", err)
	}
	c.Close()
	img, _ := spec.ByName(spec.Options{Profile: spec.Offline}, image)
	if _, err := llbgraph.ReadLayouts(llbgraph.DefaultBaseDir(), img, llbgraph.DefaultPlatform); err != nil {
		skipUnlessE2E(t, "no offline bases: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	require.NoError(t, err)
	return ctx, root
}

// skipUnlessE2E skips a test that needs buildkitd and the offline bases,
// except under KGCI_E2E=1 (scripts/test.sh, after starting the engines),
// where a missing engine is a failure, not a quiet skip.
func skipUnlessE2E(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("KGCI_E2E") == "1" {
		t.Fatalf("KGCI_E2E=1 but "+format, args...)
	}
	t.Skipf(format+" (set KGCI_E2E=1 to make this a failure)", args...)
}

// TestRebuildKeepsAnUnchangedImage: a second build into the same directory
// finds the same config digest and keeps the tarball (not rewritten), with
// the same figures; a new revision label is a new image and is exported.
func TestRebuildKeepsAnUnchangedImage(t *testing.T) {
	ctx, root := needBuilder(t, "frontend")
	dir := t.TempDir()
	build := func(rev string) (buildReport, string) {
		var out bytes.Buffer
		require.NoError(t, runBuild(ctx, []string{
			"--profile", "offline", "--images", "frontend", "--repo", root, "--budgets", "none",
			"--out", filepath.Join(dir, "images"), "--progress", "quiet", "--tag", "kgci-rebuild-test",
			"--revision", rev, "--created", "2026-01-02T03:04:05Z",
		}, &out, os.Stderr), out.String())
		return readBuildReport(t, filepath.Join(dir, "build.json")), out.String()
	}
	first, out := build("1111111111111111111111111111111111111111")
	assert.Contains(t, out, "(exported)")
	im := first.Images[0]
	assert.False(t, im.Reused)
	st, err := os.Stat(im.Tarball)
	require.NoError(t, err)
	assert.Equal(t, st.Size(), im.TarballBytes)
	// Back-date the tarball: a rewrite would give it a new modification time.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	require.NoError(t, os.Chtimes(im.Tarball, old, old))

	second, out := build("1111111111111111111111111111111111111111")
	assert.Contains(t, out, "(unchanged, tarball kept)")
	again := second.Images[0]
	assert.True(t, again.Reused)
	assert.Equal(t, im.ConfigDigest, again.ConfigDigest)
	assert.Equal(t, im.Digest, again.Digest)
	assert.Equal(t, im.Compressed, again.Compressed)
	assert.Equal(t, im.Uncompressed, again.Uncompressed)
	assert.Equal(t, im.User, again.User)
	st, err = os.Stat(im.Tarball)
	require.NoError(t, err)
	assert.True(t, st.ModTime().Equal(old), "the unchanged tarball was rewritten (%v)", st.ModTime())

	third, out := build("2222222222222222222222222222222222222222")
	assert.Contains(t, out, "(exported)")
	assert.False(t, third.Images[0].Reused)
	assert.NotEqual(t, im.ConfigDigest, third.Images[0].ConfigDigest, "a new revision label is a new image")
	// Same layers (only the label changed): their sizes came from the last report.
	assert.Len(t, third.Images[0].LayerSizes, im.Layers)
	assert.Equal(t, im.Uncompressed, third.Images[0].Uncompressed)
	assert.Equal(t, im.Compressed, third.Images[0].Compressed)
	st, err = os.Stat(im.Tarball)
	require.NoError(t, err)
	assert.False(t, st.ModTime().Equal(old), "the changed image's tarball was not written")
}

// --provenance keeps BuildKit's own SLSA provenance beside the tarball, while the
// tarball stays a docker-archive Docker 20.10 loads (manifest.json, one image), and
// an unchanged rebuild keeps both.
func TestBuildKeepsBuildKitsProvenance(t *testing.T) {
	ctx, root := needBuilder(t, "frontend")
	dir := t.TempDir()
	build := func() buildReport {
		var out bytes.Buffer
		require.NoError(t, runBuild(ctx, []string{
			"--profile", "offline", "--images", "frontend", "--repo", root, "--budgets", "none",
			"--out", filepath.Join(dir, "images"), "--progress", "quiet", "--tag", "kgci-provenance-test",
			"--revision", "2222222222222222222222222222222222222222", "--created", "2026-01-02T03:04:05Z",
			"--provenance", "mode=max",
		}, &out, os.Stderr), out.String())
		return readBuildReport(t, filepath.Join(dir, "build.json"))
	}
	im := build().Images[0]
	require.Equal(t, filepath.Join(dir, "images", "frontend"+attest.BuildKitSuffix), im.Provenance)
	b, err := os.ReadFile(im.Provenance)
	require.NoError(t, err)
	var st struct {
		Type          string `json:"_type"`
		PredicateType string `json:"predicateType"`
		Predicate     struct {
			BuildDefinition struct {
				BuildType string `json:"buildType"`
			} `json:"buildDefinition"`
		} `json:"predicate"`
	}
	require.NoError(t, json.Unmarshal(b, &st))
	assert.Equal(t, "https://in-toto.io/Statement/v1", st.Type)
	assert.Equal(t, attest.PredicateSLSA, st.PredicateType)
	assert.Contains(t, st.Predicate.BuildDefinition.BuildType, "moby/buildkit")

	tb, err := publish.DescribeTarball(im.Tarball)
	require.NoError(t, err, "the tarball is still one image with manifest.json")
	assert.Equal(t, im.ConfigDigest, tb.ConfigDigest)

	again := build().Images[0]
	assert.True(t, again.Reused)
	assert.Equal(t, im.Provenance, again.Provenance)
	assert.FileExists(t, again.Provenance)
}
