package buildkit

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/imageinspect"
	"github.com/kidney-genetics/kidney-genetics-db/ci/llbgraph"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

func TestConnectNoDaemon(t *testing.T) {
	addr := "unix://" + filepath.Join(t.TempDir(), "nobody.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Connect(ctx, addr, TLS{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot reach buildkitd at "+addr)
	assert.Contains(t, err.Error(), "scripts/engines/buildkitd.sh start or set BUILDKIT_HOST")
}

func TestMissingBaseLayout(t *testing.T) {
	dir := t.TempDir()
	img := spec.Backend(spec.Options{Profile: spec.Offline})
	_, err := prepare(img, Options{Spec: spec.Options{Profile: spec.Offline}, BaseDir: dir, OutDir: t.TempDir()})
	require.ErrorIs(t, err, llbgraph.ErrMissingLayout)
	assert.Contains(t, err.Error(), filepath.Join(dir, "python", "index.json"))
	assert.Contains(t, err.Error(), "run scripts/make-base-images.sh")
}

func TestMissingHostCA(t *testing.T) {
	img := spec.Frontend(spec.Options{Profile: spec.Upstream})
	img.Stages[0].Ops = append(img.Stages[0].Ops, spec.Run{Args: []string{"true"}, HostCA: true})
	_, err := prepare(img, Options{Spec: spec.Options{Profile: spec.Upstream}, HostCA: "/nonexistent/ca.crt", OutDir: t.TempDir()})
	assert.ErrorContains(t, err, "needs the host CA bundle")
	assert.ErrorContains(t, err, "--host-ca")
}

func TestTagFor(t *testing.T) {
	img := spec.Backend(spec.Options{})
	assert.Equal(t, "kidney_genetics_backend:latest", TagFor(img, ""))
	assert.Equal(t, "kidney_genetics_backend:ci-42", TagFor(img, "ci-42"))
}

// smallImage exercises every op type the translator emits against a real
// daemon, on the offline python base, in a few seconds.
func smallImage(name string) spec.Image {
	return spec.Image{
		Name: name,
		Tag:  "kgci-test-" + name + ":latest",
		Stages: []spec.Stage{
			{Name: "build", Base: spec.BasePython, Ops: []spec.Op{
				spec.Workdir{Path: "/w"},
				spec.CopySrc{From: "data", To: "/w/data", Dir: true, Exclude: []string{"*.skip"}},
				spec.Env{KV: spec.KV{Key: "GREETING", Value: "hello " + name}},
				spec.Run{Args: []string{"sh", "-c", `echo "$GREETING from $(pwd)" > out.txt`}},
				spec.Run{Args: []string{"sh", "-c", "wc -c < " + spec.HostCAPath + " > ca-size && echo $STEP_ONLY > step-env"},
					HostCA: true, Env: []spec.KV{{Key: "STEP_ONLY", Value: "yes"}},
					Caches: []spec.Cache{{ID: "kgci-test-cache", Path: "/cache"}}},
				spec.Run{Args: []string{"sh", "-c", "echo ${STEP_ONLY:-unset} > later-env"}},
			}},
			{Name: "final", Base: spec.BasePython, Ops: []spec.Op{
				spec.CopyStage{Stage: "build", From: "/w", To: "/app", Owner: "1000:1000", Dir: true},
				spec.CopySrc{From: "data/keep.txt", To: "/etc/kept.txt"},
			}},
		},
		Config: spec.Config{
			User:         "1000:1000",
			Env:          []spec.KV{{Key: "APP", Value: name}},
			Cmd:          []string{"cat", "/app/out.txt"},
			WorkingDir:   "/app",
			ExposedPorts: []string{"8000/tcp"},
			Healthcheck:  &spec.Healthcheck{Test: []string{"CMD", "true"}, Interval: 5, Retries: 2},
			Labels:       map[string]string{"org.opencontainers.image.title": name},
		},
	}
}

// needDaemon connects to buildkitd (BUILDKIT_HOST) and finds the python base
// layout, or skips (fails under KGCI_E2E=1); both end with the test.
func needDaemon(t *testing.T) (context.Context, *client.Client, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	c, err := Connect(ctx, Addr(), TLS{})
	if err != nil {
		skipUnlessE2E(t, "no daemon: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	baseDir := llbgraph.DefaultBaseDir()
	if _, err := llbgraph.ReadLayout(baseDir, spec.BasePython, "python", llbgraph.DefaultPlatform); err != nil {
		skipUnlessE2E(t, "no python base: %v", err)
	}
	return ctx, c, baseDir
}

// TestBuildOnDaemon needs buildkitd (scripts/engines/buildkitd.sh start)
// and the python base layout (scripts/make-base-images.sh python).
func TestBuildOnDaemon(t *testing.T) {
	ctx, c, baseDir := needDaemon(t)

	repo := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(repo, "data"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(repo, "data", "keep.txt"), []byte("kept\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(repo, "data", "drop.skip"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(repo, "secret.env"), []byte("NOT_SENT=1"), 0o644))
	ca := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(ca, []byte("0123456789"), 0o644))

	out := t.TempDir()
	var progress bytes.Buffer
	opt := Options{
		Spec: spec.Options{Profile: spec.Offline}, RepoRoot: repo, BaseDir: baseDir, HostCA: ca,
		OutDir: out, OCI: true, Tag: "t1", Progress: &progress, ProgressMode: "plain",
	}
	results, err := Build(ctx, c, []spec.Image{smallImage("one"), smallImage("two")}, opt)
	require.NoError(t, err, progress.String())
	require.Len(t, results, 2)
	// One shared display shows both builds.
	assert.Contains(t, progress.String(), "[one build")
	assert.Contains(t, progress.String(), "[two build")

	for _, r := range results {
		assert.Equal(t, "kgci-test-"+r.Name+":t1", r.Tag)
		assert.True(t, strings.HasPrefix(r.Digest, "sha256:"), r.Digest)
		assert.NotEmpty(t, r.GraphDigest)
		_, err := os.Stat(r.Tarball + ".partial")
		assert.True(t, os.IsNotExist(err))
		for _, tarPath := range []string{r.Tarball, r.OCITarball} {
			img, err := imageinspect.ReadFile(tarPath, imageinspect.Options{Files: true})
			require.NoError(t, err, tarPath)
			files := img.Files
			out, ok := files["/app/out.txt"]
			require.True(t, ok, "copied from the build stage")
			assert.Equal(t, 1000, out.UID)
			assert.Equal(t, 1000, out.GID)
			assert.Equal(t, int64(len("hello "+r.Name+" from /w\n")), out.Size, "env and workdir reached RUN")
			assert.Equal(t, int64(len("10\n")), files["/app/ca-size"].Size, "secret was mounted")
			assert.Equal(t, int64(len("yes\n")), files["/app/step-env"].Size)
			assert.Equal(t, int64(len("unset\n")), files["/app/later-env"].Size, "step env does not leak")
			assert.Contains(t, files, "/app/data/keep.txt")
			assert.NotContains(t, files, "/app/data/drop.skip", "exclude pattern")
			assert.Contains(t, files, "/etc/kept.txt")
			assert.NotContains(t, files, "/cache", "cache mount is not a layer")
			for p := range files {
				assert.False(t, strings.HasPrefix(p, "/run/secrets/"), "secret leaked into a layer: %s", p)
				assert.NotContains(t, p, "secret.env")
			}
			cfg := img.Config.Config
			assert.Equal(t, "1000:1000", cfg.User)
			assert.Contains(t, cfg.Env, "APP="+r.Name)
			assert.True(t, slices.ContainsFunc(cfg.Env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }), "base env inherited")
			assert.Equal(t, "/app", cfg.WorkingDir)
			assert.Equal(t, 5*time.Second, cfg.Healthcheck.Interval)
			assert.Contains(t, cfg.ExposedPorts, "8000/tcp")
			assert.Equal(t, r.Name, cfg.Labels["org.opencontainers.image.title"])
			assert.Equal(t, "amd64", img.Config.Architecture)
		}
	}

	// No change: everything is cached and the image is identical.
	again, err := Build(ctx, c, []spec.Image{smallImage("one")}, Options{
		Spec: opt.Spec, RepoRoot: repo, BaseDir: baseDir, HostCA: ca, OutDir: t.TempDir(), Tag: "t1",
		Progress: &progress, ProgressMode: "quiet", Sequential: true,
	})
	require.NoError(t, err)
	assert.Equal(t, results[0].Digest, again[0].Digest)
	assert.Equal(t, results[0].GraphDigest, again[0].GraphDigest)

	// A failing step fails the build with the step's name and leaves no
	// tarball behind.
	bad := smallImage("bad")
	bad.Stages[0].Ops = append(bad.Stages[0].Ops, spec.Run{Args: []string{"sh", "-c", "exit 3"}})
	badOut := t.TempDir()
	_, err = Build(ctx, c, []spec.Image{bad}, Options{
		Spec: opt.Spec, RepoRoot: repo, BaseDir: baseDir, HostCA: ca, OutDir: badOut, Progress: &progress, ProgressMode: "quiet",
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "building bad")
	assert.Contains(t, err.Error(), "exit 3")
	tars, _ := filepath.Glob(filepath.Join(badOut, "*.tar*"))
	assert.Empty(t, tars)
	assert.False(t, errors.Is(err, context.Canceled))
}

// TestExportSendsOnlyWhatTheStoreLacks: the docker-archive kgci writes from
// its blob store is byte for byte the one BuildKit's docker exporter sends;
// after a change only the changed blobs are written into the store, and the
// store then holds exactly the new image's blobs.
func TestExportSendsOnlyWhatTheStoreLacks(t *testing.T) {
	ctx, c, baseDir := needDaemon(t)
	repo := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(repo, "data"), 0o755))
	keep := filepath.Join(repo, "data", "keep.txt")
	require.NoError(t, os.WriteFile(keep, []byte("first\n"), 0o644))
	ca := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(ca, []byte("0123456789"), 0o644))
	img := smallImage("store")
	opt := Options{
		Spec: spec.Options{Profile: spec.Offline}, RepoRoot: repo, BaseDir: baseDir, HostCA: ca,
		OutDir: t.TempDir(), Tag: "t1", Progress: io.Discard, ProgressMode: "quiet",
	}
	first, err := Build(ctx, c, []spec.Image{img}, opt)
	require.NoError(t, err)
	// The history is llbgraph's, one entry per layer: the exporter made up none
	// (its entries depend on where a layer came from, see llbgraph.History).
	info, err := imageinspect.ReadFile(first[0].Tarball, imageinspect.Options{})
	require.NoError(t, err)
	var layered int
	for _, h := range info.Config.History {
		assert.NotEqual(t, "buildkit.exporter.image.v0", h.Comment, h.CreatedBy)
		if !h.EmptyLayer {
			layered++
		}
	}
	assert.Equal(t, len(info.Config.RootFS.DiffIDs), layered)
	assert.Equal(t, "[store final 2/2] COPY data/keep.txt /etc/kept.txt", info.Config.History[len(info.Config.History)-1].CreatedBy)

	// The daemon's own docker-archive of the same build.
	p, err := prepare(img, opt)
	require.NoError(t, err)
	so := solveOpt(p, opt)
	daemonTar := filepath.Join(t.TempDir(), "daemon.tar")
	so.Exports = []client.ExportEntry{{Type: client.ExporterDocker, Attrs: map[string]string{"name": p.tag}, Output: fileOutput(daemonTar)}}
	var graph string
	_, err = c.Build(ctx, so, "kgci", buildFunc(p, nil, &graph), nil)
	require.NoError(t, err)
	assert.Equal(t, tarContents(t, daemonTar), tarContents(t, first[0].Tarball), "the tarball differs from BuildKit's docker export")

	store := StoreDir(opt.OutDir, img.Name)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	before := storeBlobs(t, store)
	for _, b := range before {
		require.NoError(t, os.Chtimes(b, old, old))
	}

	require.NoError(t, os.WriteFile(keep, []byte("second\n"), 0o644))
	opt.Previous = map[string]Result{img.Name: first[0]}
	second, err := Build(ctx, c, []spec.Image{img}, opt)
	require.NoError(t, err)
	require.False(t, second[0].Reused)
	require.NotEqual(t, first[0].Digest, second[0].Digest)

	after := storeBlobs(t, store)
	var sent, kept int
	for d, path := range after {
		st, err := os.Stat(path)
		require.NoError(t, err)
		if st.ModTime().Equal(old) {
			kept++
			assert.Contains(t, before, d)
		} else {
			sent++
		}
	}
	// Manifest, config and the two layers that hold keep.txt; the base's
	// layers stay.
	assert.Equal(t, 4, sent, "blobs written into the store by the second export")
	assert.Positive(t, kept, "no blob of the first build was reused")
	// Exactly the new image's blobs: the first build's manifest and config are gone.
	names, err := tarEntries(second[0].Tarball)
	require.NoError(t, err)
	var inTar []string
	for _, n := range names {
		if d, ok := strings.CutPrefix(n, "blobs/sha256/"); ok && d != "" {
			inTar = append(inTar, "sha256:"+d)
		}
	}
	assert.ElementsMatch(t, inTar, slices.Collect(maps.Keys(after)))
	assert.NotContains(t, after, first[0].Digest)
}

func storeBlobs(t *testing.T, store string) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(store, "blobs", "sha256", "*"))
	require.NoError(t, err)
	out := map[string]string{}
	for _, p := range paths {
		out["sha256:"+filepath.Base(p)] = p
	}
	return out
}

// tarContents is every entry of a tarball with its header and the digest of
// its content, in order. index.json's creation time is the time of each
// export (BuildKit's exporter stamps it), so it is left out.
func tarContents(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		if h.Name == "index.json" {
			b = regexp.MustCompile(`"org\.opencontainers\.image\.created":"[^"]*",?`).ReplaceAll(b, nil)
		}
		sum := sha256.Sum256(b)
		out = append(out, fmt.Sprintf("%s %o %d %s", h.Name, h.Mode, h.Typeflag, hex.EncodeToString(sum[:])))
	}
}

func tarEntries(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		names = append(names, h.Name)
	}
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

func TestRegistryHint(t *testing.T) {
	dns := errors.New(`failed to solve: failed to do request: Head "https://registry-1.docker.io/v2/library/nginx/manifests/1.26-alpine": dial tcp: lookup registry-1.docker.io: no such host`)
	assert.Contains(t, registryHint(spec.Upstream, dns), "--profile offline")
	assert.Empty(t, registryHint(spec.Offline, dns), "offline builds never pull, the hint would mislead")
	assert.Empty(t, registryHint(spec.Upstream, errors.New("process \"npm ci\" did not complete successfully: exit code: 1")))
}
