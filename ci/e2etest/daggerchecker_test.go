package e2etest

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/baseimage"
	"github.com/kidney-genetics/kidney-genetics-db/ci/checks"
	"github.com/kidney-genetics/kidney-genetics-db/ci/daggerrun"
	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/publish"
	"github.com/kidney-genetics/kidney-genetics-db/ci/publish/publishtest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/report"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// checker is the Dagger module's checker container, assembled by hand under our real
// dockerd: the offline docker base, a static kgci, the tarballs, the files test-e2e
// reads, /var/lib/docker on tmpfs, privileged, and the exact command lines
// ci/daggerrun sends to Dagger. Dagger's part (building this container) is pinned by
// ci/daggerrun's golden queries and was run on a real engine by hand (docs/dagger.md);
// everything that happens inside it runs here for real.
type checker struct {
	e       *env
	name    string
	dir     string // holds images/, src/, results/
	results string
}

var (
	daggerBinOnce sync.Once
	daggerBinDir  string
	daggerBinErr  error
)

// daggerBinaries builds kgci and kgci-supplychain once per test process, with the
// flags ci/daggerbuild (Kgci, SupplyChain) uses, into a directory TestMain removes.
func daggerBinaries(t *testing.T, root string) string {
	t.Helper()
	daggerBinOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if daggerBinDir, daggerBinErr = os.MkdirTemp("", "kgci-dagger-bin-"); daggerBinErr != nil {
			return
		}
		for _, b := range []struct{ dir, pkg, out string }{
			{".", "./ci/cmd/kgci", "kgci"},
			{"ci/supplychain", "./cmd/kgci-supplychain", "kgci-supplychain"},
		} {
			build := exec.CommandContext(ctx, "go", "build", "-C", b.dir, "-trimpath", "-buildvcs=false", "-o", filepath.Join(daggerBinDir, b.out), b.pkg)
			build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
			if out, err := build.CombinedOutput(); err != nil {
				daggerBinErr = fmt.Errorf("build %s: %v\n%s", b.out, err, out)
				return
			}
		}
	})
	require.NoError(t, daggerBinErr)
	return daggerBinDir
}

// images are the pipeline's tested tarballs (results/images; KGCI_IMAGES overrides)
// plus the postgres base, as the Dagger path passes them.
func (e *env) newChecker(t *testing.T) *checker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cache := os.Getenv("KGCI_CACHE")
	if cache == "" {
		cache = "/var/cache/kidney-genetics-ci"
	}
	c := &checker{e: e, name: "kgci-dagger-checker-" + dockerstack.NewRunID(), dir: t.TempDir()}
	c.results = filepath.Join(c.dir, "results")

	bins := daggerBinaries(t, e.root)

	images := os.Getenv("KGCI_IMAGES")
	if images == "" {
		images = filepath.Join(e.root, "results", "images")
	}
	require.NoError(t, os.MkdirAll(filepath.Join(c.dir, "images"), 0o755))
	for _, n := range publish.ImageNames {
		src := filepath.Join(images, n+".tar")
		require.FileExists(t, src, "KGCI_E2E=1 but scripts/pipeline.sh wrote no %s", src)
		require.NoError(t, os.Link(src, filepath.Join(c.dir, "images", n+".tar")))
	}
	require.NoError(t, baseimage.WriteDockerArchive(filepath.Join(cache, "base", "postgres"), "postgres", OfflinePostgresTag, filepath.Join(c.dir, "images", "postgres.tar")))

	require.NoError(t, os.MkdirAll(filepath.Join(c.dir, "src"), 0o755))
	for _, f := range daggerrun.SourceFiles {
		b, err := os.ReadFile(filepath.Join(e.root, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(c.dir, "src", f), b, 0o644))
	}
	require.NoError(t, os.MkdirAll(c.results, 0o755))

	const dockerBase = "kidney-base/docker:offline"
	if _, err := e.d.InspectImage(ctx, dockerBase); err != nil {
		archive := filepath.Join(c.dir, "docker-base.tar")
		require.NoError(t, baseimage.WriteDockerArchive(filepath.Join(cache, "base", "docker"), "docker", dockerBase, archive),
			"the offline docker base: scripts/make-base-images.sh docker")
		require.NoError(t, e.d.Load(ctx, archive))
		os.Remove(archive)
	}
	// The same layout as daggerrun.Checker; tmpfs with Dagger's options (nosuid only).
	args := append([]string{"run", "-d", "--name", c.name}, insecureRootFlags(t)...)
	_, err := e.d.Run(ctx, append(args,
		"--label", dockerstack.LabelRun+"="+strings.TrimPrefix(c.name, "kgci-"),
		"--tmpfs", daggerrun.DockerData+":rw,exec,dev,nosuid",
		"-v", filepath.Join(bins, "kgci")+":"+daggerrun.KgciPath+":ro",
		"-v", filepath.Join(bins, "kgci-supplychain")+":"+daggerrun.SupplyChainPath+":ro",
		"-v", filepath.Join(c.dir, "images")+":"+daggerrun.ImagesDir+":ro",
		"-v", filepath.Join(c.dir, "src")+":"+daggerrun.SourceDir+":ro",
		// As the workflow passes grype's database (dagger call --vuln-db); here a FIXTURE
		// whose one advisory matches nothing in the images.
		"-v", fixtureDB(t, e, advisory{ID: "GHSA-kgci-fixt-0010", Ecosystem: "npm", Package: "vue", Constraint: "< 1.0.0", FixedIn: "1.0.0", Severity: "critical"})+":"+daggerrun.VulnDBDir,
		"-v", c.results+":"+daggerrun.ResultsDir,
		"-w", daggerrun.SourceDir,
		dockerBase, "sh", "-c", writableKernelFS+"touch /run/checker-ready\nexec sleep infinity")...)
	require.NoError(t, err, "the checker container: a Docker engine in a container needs the host's root capabilities")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = e.d.Run(ctx, "rm", "-f", "-v", c.name)
	})
	// Its set-up ran before the tests exec into it, or its output says why not.
	for i := 0; ; i++ {
		res, err := e.d.ExecArgs(ctx, nil, c.name, "test", "-e", "/run/checker-ready")
		if err == nil && res.ExitCode == 0 {
			break
		}
		if err != nil || i == 100 {
			logs, _ := e.d.Run(ctx, "logs", c.name)
			require.FailNow(t, "the checker container did not get ready", "%v\ncontainer output:\n%s", err, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

// insecureRootFlags give the checker what Dagger's insecureRootCapabilities (BuildKit's
// insecure security mode) gives a container: every capability in the caller's bounding
// set, no seccomp or AppArmor profile, all devices. `docker run --privileged` would be
// shorter but asks for every capability Docker knows, and runc fails ("unable to apply
// caps") on machines whose bounding set lacks one: CI's lacks CAP_SYS_RESOURCE.
func insecureRootFlags(t *testing.T) []string {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	var bnd uint64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			bnd, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			require.NoError(t, err)
		}
	}
	flags := []string{
		"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm",
	}
	for i, c := range dockerKnownCaps {
		if bnd&(1<<i) != 0 {
			flags = append(flags, "--cap-add", c)
		}
	}
	require.Contains(t, flags, "SYS_ADMIN", "a Docker engine in the checker needs CAP_SYS_ADMIN, which this process cannot grant")
	return flags
}

// dockerKnownCaps are the capabilities in bit order up to CAP_AUDIT_READ (37): the ones
// Docker 20.10 (Debian's docker.io) accepts in --cap-add.
var dockerKnownCaps = strings.Fields(`CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL
	SETGID SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW
	IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN
	SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE
	AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ`)

// writableKernelFS makes /sys, /proc/sys and the cgroup mounts writable, as BuildKit's
// insecure mode mounts them and a Docker engine needs them (bridges, sysctls, cgroups);
// Docker mounts them read-only for a container that is not --privileged.
const writableKernelFS = `set -e
mount -o remount,rw /sys
for d in /proc/sys /sys/fs/cgroup /sys/fs/cgroup/*; do
  if mountpoint -q "$d"; then mount -o remount,bind,rw "$d"; fi
done
`

// exec runs a command line in the checker as Dagger's withExec does; it returns the
// exit code and the output.
func (c *checker) exec(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	flags := []string{}
	for _, kv := range env {
		flags = append(flags, "-e", kv)
	}
	res, err := c.e.d.ExecArgs(ctx, flags, c.name, args...)
	require.NoError(t, err)
	return res.ExitCode, res.Output()
}

func (c *checker) summary(t *testing.T) *report.Summary {
	t.Helper()
	s, err := report.ReadSummary(c.results)
	require.NoError(t, err)
	return s
}

// The Dagger path's checks, run for real: every check passes on the pipeline's images
// inside the checker's own Docker engine (the size budgets, and the vulnerability gate
// against a fixture database, included), with the same check list as kgci's run, the
// tested digests recorded, and reports that agree; then its publish step pushes exactly
// those digests. It is the one full-suite run of this package: the pipeline's own
// test-e2e runs the suite on the host before these tests.
func TestDaggerCheckerCommands(t *testing.T) {
	t.Parallel()
	e := setup(t)
	require.Equal(t, spec.Offline, e.profile, "the checker test uses the offline bases")
	c := e.newChecker(t)

	t0 := time.Now()
	code, out := c.exec(t, nil, daggerrun.TestArgs(spec.Offline, "dgr"+dockerstack.NewRunID(), true)...)
	t.Logf("checker run (engine start, load, checks, teardown): %.1fs\n%s", time.Since(t0).Seconds(), out)
	require.Equal(t, 0, code, "kgci test-e2e in the checker failed:\n%s", out)
	assert.Contains(t, out, "private Docker engine up")

	s := c.summary(t)
	assert.True(t, s.Passed)
	assert.Equal(t, "offline", s.Profile, "results.json names the profile")
	assert.NotEmpty(t, s.RunID, "results.json names the run")
	var got, want []string
	b, err := os.ReadFile(filepath.Join(c.results, report.JSONFile))
	require.NoError(t, err)
	var doc struct {
		Checks []struct{ Name, Status string } `json:"checks"`
	}
	require.NoError(t, json.Unmarshal(b, &doc))
	for _, x := range doc.Checks {
		got = append(got, x.Name)
		assert.Equal(t, "pass", x.Status, x.Name)
	}
	for _, svc := range dockerstack.Order {
		want = append(want, "startup."+svc)
	}
	for _, ch := range checks.All() {
		want = append(want, ch.Name)
	}
	assert.ElementsMatch(t, want, got, "the checker runs every check and startup result")
	// The other reports say the same, and a green run keeps no logs.
	var junit struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	b, err = os.ReadFile(filepath.Join(c.results, report.JUnitFile))
	require.NoError(t, err)
	require.NoError(t, xml.Unmarshal(b, &junit))
	assert.Equal(t, len(got), junit.Tests)
	assert.Zero(t, junit.Failures)
	md, err := os.ReadFile(filepath.Join(c.results, report.MarkdownFile))
	require.NoError(t, err)
	assert.Contains(t, string(md), "## ✅")
	assert.NoDirExists(t, filepath.Join(c.results, "logs"), "logs are saved only when something fails")
	// The same list as our CI's own run of the pipeline, when it left one.
	if ours, err := os.ReadFile(filepath.Join(e.root, "results", report.JSONFile)); err == nil {
		var od struct {
			Checks []struct{ Name string } `json:"checks"`
		}
		require.NoError(t, json.Unmarshal(ours, &od))
		var names []string
		for _, x := range od.Checks {
			names = append(names, x.Name)
		}
		assert.Equal(t, names, got, "scripts/pipeline.sh and the Dagger checker report the same checks in the same order")
	}
	for _, n := range publish.ImageNames {
		tb, err := publish.DescribeTarball(filepath.Join(c.dir, "images", n+".tar"))
		require.NoError(t, err)
		var rec *report.Image
		for i := range s.Images {
			if s.Images[i].Service == n {
				rec = &s.Images[i]
			}
		}
		require.NotNil(t, rec, "results.json records no tested %s image", n)
		assert.Equal(t, tb.Digest, rec.Digest, "%s tested digest", n)
		assert.Equal(t, tb.ConfigDigest, rec.ID, "%s image ID", n)
	}

	// The publish step, in the same container, to a registry the container reaches.
	gw, err := e.d.Run(context.Background(), "network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}")
	require.NoError(t, err)
	host, _ := publishtest.StartRegistryOn(t, gw+":0", "ci", "not-a-real-secret")
	revision, err := publish.ImageRevision(filepath.Join(c.dir, "images", "backend.tar"))
	require.NoError(t, err)
	args, err := daggerrun.PublishArgs(daggerrun.PublishOptions{Registry: host + "/kidney-genetics", Revision: revision, Version: "v0.0.0-ci", Insecure: true, Username: "ci"})
	require.Error(t, err, "a username without a password secret is refused")
	args, err = daggerrun.PublishArgs(daggerrun.PublishOptions{Registry: host + "/kidney-genetics", Revision: revision, Version: "v0.0.0-ci", Insecure: true})
	require.NoError(t, err)
	code, out = c.exec(t, []string{publish.EnvUsername + "=ci", publish.EnvPassword + "=not-a-real-secret"}, args...)
	require.Equal(t, 0, code, "kgci publish in the checker failed:\n%s", out)
	assert.NotContains(t, out, "not-a-real-secret")

	var pub publish.Result
	b, err = os.ReadFile(filepath.Join(c.results, "publish.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &pub))
	require.Len(t, pub.Images, 2)
	md, err = os.ReadFile(filepath.Join(c.results, "publish.md"))
	require.NoError(t, err)
	for _, p := range pub.Images {
		assert.NotEmpty(t, p.TestedDigest, p.Name)
		assert.Equal(t, p.TestedDigest, p.Digest, "%s: pushed digest = tested digest", p.Name)
		assert.Contains(t, string(md), p.Digest)
		ref, err := name.ParseReference(p.Pinned, name.Insecure)
		require.NoError(t, err)
		img, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: "ci", Password: "not-a-real-secret"}))
		require.NoError(t, err)
		d, _ := img.Digest()
		assert.Equal(t, p.TestedDigest, d.String(), "%s pulled back by digest", p.Name)
	}
	t.Logf("publish.md:\n%s", md)
}

// A fault under the Dagger command turns the same named check red as under kgci (here:
// budgets that the images cannot meet, the check size.budgets), the run exits 1 with
// its reports, and publish refuses the failed run.
func TestDaggerCheckerReportsAFault(t *testing.T) {
	t.Parallel()
	e := setup(t)
	c := e.newChecker(t)
	budgets := filepath.Join(c.dir, "src", "budgets.yaml")
	require.NoError(t, os.Chmod(budgets, 0o644))
	var tiny strings.Builder
	for _, p := range []string{"offline", "upstream"} {
		fmt.Fprintf(&tiny, "%s:\n  backend:\n    compressed: 1MB\n    uncompressed: 1MB\n  frontend:\n    compressed: 1MB\n    uncompressed: 1MB\n", p)
	}
	require.NoError(t, os.WriteFile(budgets, []byte(tiny.String()), 0o644))
	code, out := c.exec(t, nil, append(daggerrun.TestArgs(spec.Offline, "dgf"+dockerstack.NewRunID(), false), "--checks", "size")...)
	assert.Equal(t, 1, code, "a failed check exits 1:\n%s", out)
	s := c.summary(t)
	assert.False(t, s.Passed)
	md, err := os.ReadFile(filepath.Join(c.results, report.MarkdownFile))
	require.NoError(t, err)
	assert.Contains(t, string(md), "First failure: `size.budgets`")
	args, err := daggerrun.PublishArgs(daggerrun.PublishOptions{Registry: "127.0.0.1:1/x", Revision: "0123456789ab", Insecure: true})
	require.NoError(t, err)
	code, out = c.exec(t, nil, args...)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, out, "failed (see its summary.md): not publishing")
}
