// Package daggerrun runs the pipeline's checks and its publish step inside
// Dagger by running kgci's own commands there: `kgci test-e2e` in a
// container that holds a private Docker engine, then `kgci publish` on the
// very tarballs that were tested. So the Dagger path has the checks, the
// topology (docker-compose.prod.yml), the reports and the publish code of
// our CI, not copies of them. docs/dagger.md says why Docker runs inside the
// checker rather than as a Dagger service or through the caller's socket.
package daggerrun

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"dagger.io/dagger"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/publish"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// Paths inside the checker container.
const (
	SourceDir  = "/src"
	ImagesDir  = "/images"
	ResultsDir = "/results"
	KgciPath   = "/usr/local/bin/kgci"
	// SupplyChainPath is beside KgciPath, where kgci looks for it.
	SupplyChainPath = "/usr/local/bin/kgci-supplychain"
	// DockerData is the private engine's data root. It must not be on the
	// container's overlay root (overlay2 cannot nest on overlayfs), so it is
	// a tmpfs: nothing of a run survives it.
	DockerData = "/var/lib/docker"
)

// SourceFiles are the repository files `kgci test-e2e` reads.
var SourceFiles = []string{dockerstack.ProdComposeFile, dockerstack.TestOverlayFile, "budgets.yaml", "vulnerability-ignore.yaml"}

// Options are the inputs of one run.
type Options struct {
	Profile spec.Profile
	// Images are the tarballs to test, by service: backend, frontend and
	// postgres (the profile's database base).
	Images map[string]*dagger.File
	Kgci   *dagger.File
	// SupplyChain is kgci-supplychain, installed next to kgci (which looks there).
	SupplyChain *dagger.File
	// Docker is the profile's Docker base (spec.BaseDocker).
	Docker *dagger.Container
	Source *dagger.Directory
	// RunID names the run's resources and reports, and makes the engine
	// run the checks again instead of answering from its cache.
	RunID string
	// VulnDB is a grype vulnerability database directory (kgci-supplychain vulndb update) for
	// supplychain.vulnerabilities; nil skips that check.
	VulnDB *dagger.Directory
}

// VulnDBDir is where the checker finds the vulnerability database.
const VulnDBDir = "/vulndb"

// TestArgs is the checker's command: the same `kgci test-e2e` our CI runs
// (scripts/pipeline.sh), plus --dockerd, which starts the engine the
// container lacks, and the run id.
func TestArgs(p spec.Profile, runID string, vulnDB bool) []string {
	args := []string{"kgci", "test-e2e", "--dockerd", "--profile", string(p),
		"--images", ImagesDir, "--results", ResultsDir, "--run-id", runID}
	if vulnDB {
		args = append(args, "--vuln-db", VulnDBDir)
	}
	return args
}

// Checker is the container the checks run in: the Docker base with kgci,
// the tarballs and the repository files test-e2e reads.
func Checker(c *dagger.Client, o Options) (*dagger.Container, error) {
	if o.RunID == "" {
		return nil, errors.New("daggerrun: an empty run id would let the engine answer from the cache of an earlier run")
	}
	if o.Kgci == nil || o.SupplyChain == nil {
		return nil, errors.New("daggerrun: kgci and kgci-supplychain are both needed")
	}
	for _, svc := range []string{"backend", "frontend", "postgres"} {
		if o.Images[svc] == nil {
			return nil, fmt.Errorf("daggerrun: no %s image", svc)
		}
	}
	ctr := o.Docker
	for _, args := range spec.CheckerSetup(o.Profile) {
		ctr = ctr.WithExec(args)
	}
	ctr = ctr.
		WithFile(KgciPath, o.Kgci, dagger.ContainerWithFileOpts{Permissions: 0o755}).
		WithFile(SupplyChainPath, o.SupplyChain, dagger.ContainerWithFileOpts{Permissions: 0o755}).
		WithDirectory(SourceDir, o.Source.Filter(dagger.DirectoryFilterOpts{Include: SourceFiles})).
		WithWorkdir(SourceDir).
		// Present even when kgci fails before writing a report.
		WithDirectory(ResultsDir, c.Directory()).
		WithMountedTemp(DockerData).
		WithEnvVariable("KGCI_RUN", o.RunID)
	for _, svc := range []string{"backend", "frontend", "postgres"} {
		ctr = ctr.WithMountedFile(ImagesDir+"/"+svc+".tar", o.Images[svc])
	}
	if o.VulnDB != nil {
		ctr = ctr.WithMountedDirectory(VulnDBDir, o.VulnDB)
	}
	return ctr, nil
}

// Tested is a finished test run.
type Tested struct {
	// Container is the checker after the run: /results holds the reports,
	// /images the tarballs they name.
	Container *dagger.Container
	Results   *dagger.Directory
	ExitCode  int
	RunID     string
}

// ErrChecksFailed marks a run whose checks ran and failed (the results
// exist); other errors mean the run could not happen.
var ErrChecksFailed = errors.New("end-to-end checks failed")

// Test runs the checks. A run whose checks fail returns the results and an
// error wrapping ErrChecksFailed that carries summary.md.
func Test(ctx context.Context, c *dagger.Client, o Options) (*Tested, error) {
	ctr, err := Checker(c, o)
	if err != nil {
		return nil, err
	}
	// Docker needs the privileges it has on a host: namespaces, mounts,
	// iptables. Only this exec gets them.
	ran := ctr.WithExec(TestArgs(o.Profile, o.RunID, o.VulnDB != nil), dagger.ContainerWithExecOpts{
		InsecureRootCapabilities: true,
		Expect:                   dagger.ReturnTypeAny,
	})
	code, err := ran.ExitCode(ctx)
	if err != nil {
		return nil, fmt.Errorf("run kgci test-e2e: %w", err)
	}
	t := &Tested{Container: ran, Results: ran.Directory(ResultsDir), ExitCode: code, RunID: o.RunID}
	if code == 0 {
		return t, nil
	}
	entries, _ := t.Results.Entries(ctx)
	if !slices.Contains(entries, "summary.md") {
		out, _ := ran.Stdout(ctx)
		errOut, _ := ran.Stderr(ctx)
		return nil, fmt.Errorf("kgci test-e2e could not run (exit %d):\n%s", code, dockerstack.Tail(out+errOut, 40))
	}
	summary, _ := t.Results.File("summary.md").Contents(ctx)
	return t, fmt.Errorf("%w (exit %d); the results directory has junit.xml, results.json and the service logs.\n%s", ErrChecksFailed, code, summary)
}

// PublishOptions say where the tested images go; see `kgci publish --help`.
type PublishOptions struct {
	// Registry is host[:port][/namespace], e.g. ghcr.io/kidney-genetics.
	Registry string
	Username string
	// Password may be nil for a registry that needs no login.
	Password *dagger.Secret
	Revision string
	Version  string
	Latest   bool
	Insecure bool
}

// PublishArgs is the publish command line (ci/cmd/kgci/publish.go). It
// reads the tested digests from results.json next to the tarballs, so a
// tarball that is not the tested one is refused.
func PublishArgs(o PublishOptions) ([]string, error) {
	host, namespace, _ := strings.Cut(strings.TrimSuffix(o.Registry, "/"), "/")
	if host == "" {
		return nil, errors.New("no registry: pass --registry HOST[/NAMESPACE], e.g. ghcr.io/kidney-genetics")
	}
	if (o.Username == "") != (o.Password == nil) {
		return nil, errors.New("registry login needs both --username and --password (a secret, e.g. env://REGISTRY_TOKEN), or neither")
	}
	if _, err := publish.Tags(o.Revision, o.Version, o.Latest, nil); err != nil {
		return nil, err
	}
	args := []string{"kgci", "publish", "--images", ImagesDir, "--results", ResultsDir,
		"--registry", host, "--namespace", namespace, "--revision", o.Revision}
	if o.Version != "" {
		args = append(args, "--version", o.Version)
	}
	if o.Latest {
		args = append(args, "--latest")
	}
	if o.Insecure {
		args = append(args, "--insecure")
	}
	return args, nil
}

// Publish pushes the tarballs a passing run tested, from the same
// container, and returns the results directory with publish.json and
// publish.md added (tested and pushed digest per image).
func Publish(ctx context.Context, t *Tested, o PublishOptions) (*dagger.Directory, error) {
	if t.ExitCode != 0 {
		return nil, errors.New("not publishing: the end-to-end checks failed")
	}
	args, err := PublishArgs(o)
	if err != nil {
		return nil, err
	}
	ctr := t.Container.WithEnvVariable("KGCI_RUN", t.RunID+"-publish")
	if o.Password != nil {
		ctr = ctr.WithEnvVariable(publish.EnvUsername, o.Username).WithSecretVariable(publish.EnvPassword, o.Password)
	}
	pushed := ctr.WithExec(args, dagger.ContainerWithExecOpts{Expect: dagger.ReturnTypeAny})
	code, err := pushed.ExitCode(ctx)
	if err != nil {
		return nil, fmt.Errorf("run kgci publish: %w", err)
	}
	if code != 0 {
		errOut, _ := pushed.Stderr(ctx)
		return nil, fmt.Errorf("kgci publish failed (exit %d): %s", code, strings.TrimSpace(errOut))
	}
	return pushed.Directory(ResultsDir), nil
}
