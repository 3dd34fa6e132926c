// Build, test and publish the Kidney Genetics Database images with Dagger.
//
// The images are described once, in ci/spec; ci/daggerbuild turns that
// description into Dagger calls, and ci/daggerrun runs kgci's own
// end-to-end checks and publish step on the built tarballs, as our CI does
// without Dagger. This file only adapts them to the Dagger module API: see
// docs/dagger.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	sdk "dagger.io/dagger"

	"github.com/kidney-genetics/kidney-genetics-db/ci/daggerbuild"
	"github.com/kidney-genetics/kidney-genetics-db/ci/daggerrun"
	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
	"github.com/kidney-genetics/kidney-genetics-db/internal/dagger"
)

// KidneyGenetics builds and checks the backend and frontend images.
type KidneyGenetics struct {
	Source *dagger.Directory
	// +private
	Profile string
	// +private
	Bases *dagger.Directory
	// +private
	HostCa *dagger.Secret
	// +private
	Revision string
	// +private
	Created string
	// +private
	VulnDb *dagger.Directory
}

func New(
	ctx context.Context,
	// The repository.
	// +defaultPath="/"
	// +ignore=["**/node_modules", "**/dist", "results", "out", "bin", "bases", "bench/out", ".git", "frontend/e2e-output", "**/__pycache__", "**/.pytest_cache", "**/*.tar", "**/*.oci", ".vulndb"]
	source *dagger.Directory,
	// The commit being built: --revision and --created default to its id
	// and commit time, as `kgci build` does, so rebuilds are identical.
	// +defaultPath="/"
	// +optional
	git *dagger.GitRef,
	// Where base images and packages come from: "upstream" (public
	// registries, uv, npm) or "offline" (local base image tarballs).
	// +optional
	// +default="upstream"
	profile string,
	// Offline profile only: a directory with python.tar, node.tar,
	// nginx.tar, postgres.tar, go.tar and docker.tar, OCI layouts made by
	// scripts/make-base-images.sh (docs/dagger.md).
	// +optional
	bases *dagger.Directory,
	// Offline profile only, for the frontend's npm step: the CA bundle npm
	// must trust behind a TLS-re-signing proxy, e.g.
	// file:/etc/ssl/certs/ca-certificates.crt.
	// +optional
	hostCa *dagger.Secret,
	// Git commit recorded in the org.opencontainers.image.revision label
	// (default: the commit of --git).
	// +optional
	revision string,
	// Build time, RFC 3339, recorded in the org.opencontainers.image.created
	// label (default: the commit time of --git).
	// +optional
	created string,
	// A grype vulnerability database directory (`kgci-supplychain vulndb update --dir
	// DIR` makes one) that the check supplychain.vulnerabilities scans the
	// images' SBOMs against; without it that check is skipped.
	// +optional
	vulnDb *dagger.Directory,
) (*KidneyGenetics, error) {
	p, err := spec.ParseProfile(profile)
	if err != nil {
		return nil, err
	}
	m := &KidneyGenetics{Source: source, Profile: string(p), Bases: bases, HostCa: hostCa, Revision: revision, Created: created, VulnDb: vulnDb}
	// Checked before anything is built or pulled.
	if err := m.options().Validate(); err != nil {
		return nil, err
	}
	if err := m.checkBases(ctx); err != nil {
		return nil, err
	}
	if git != nil && (m.Revision == "" || m.Created == "") {
		if err := m.fromGit(ctx, git); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *KidneyGenetics) options() spec.Options {
	return spec.Options{Profile: spec.Profile(m.Profile), Revision: m.Revision, Created: m.Created}
}

// checkBases names every missing base tarball at once, before any work.
func (m *KidneyGenetics) checkBases(ctx context.Context) error {
	if spec.Profile(m.Profile) != spec.Offline {
		return nil
	}
	if m.Bases == nil {
		return errors.New("the offline profile needs --bases DIR with the base image tarballs (python.tar, node.tar, nginx.tar, postgres.tar, go.tar, docker.tar); docs/dagger.md shows how to make them with scripts/make-base-images.sh")
	}
	have, err := m.Bases.Entries(ctx)
	if err != nil {
		return fmt.Errorf("--bases: %w", err)
	}
	var missing []string
	for _, k := range append(append([]spec.BaseKind{}, spec.BaseKinds...), spec.ToolBaseKinds...) {
		if !slices.Contains(have, string(k)+".tar") {
			missing = append(missing, string(k)+".tar")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("--bases lacks %s (it has: %s); make them with scripts/make-base-images.sh and tar each layout as docs/dagger.md shows", strings.Join(missing, ", "), strings.Join(have, ", "))
	}
	return nil
}

// fromGit fills in the revision and the commit time, like `kgci build`.
func (m *KidneyGenetics) fromGit(ctx context.Context, git *dagger.GitRef) error {
	commit, err := git.Commit(ctx)
	if err != nil {
		return fmt.Errorf("read the commit of the repository (pass --revision and --created instead): %w", err)
	}
	if m.Revision == "" {
		m.Revision = commit
	}
	if m.Created != "" {
		return nil
	}
	c, err := sdk.Connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	gitID, err := git.ID(ctx)
	if err != nil {
		return err
	}
	in, err := m.inputs(ctx, c)
	if err != nil {
		return err
	}
	base, err := daggerbuild.Base(c, spec.Bases(spec.Profile(m.Profile))[spec.BaseGo], in)
	if err != nil {
		return err
	}
	// The Go base has git; only the commit's metadata is read.
	out, err := base.
		WithMountedDirectory("/repo", c.LoadGitRefFromID(sdk.GitRefID(gitID)).Tree(sdk.GitRefTreeOpts{DiscardGitDir: false})).
		WithExec([]string{"git", "-c", "safe.directory=*", "-C", "/repo", "log", "-1", "--format=%cI", commit}).
		Stdout(ctx)
	if err != nil {
		return fmt.Errorf("read the commit time of %s (pass --created instead): %w", commit, err)
	}
	m.Created = strings.TrimSpace(out)
	return m.options().Validate()
}

// Build the images. `dagger call build backend export --path backend.tar`
// builds only the backend.
func (m *KidneyGenetics) Build() *Images {
	return &Images{Pipeline: m}
}

// Images are the two production images, each built on demand.
type Images struct {
	// +private
	Pipeline *KidneyGenetics
}

// The FastAPI backend, listening on 8000 as UID 1000.
func (i *Images) Backend(ctx context.Context) (*dagger.Container, error) {
	return i.Pipeline.container(ctx, "backend")
}

// The Vue frontend served by nginx on 8080 as UID 101.
func (i *Images) Frontend(ctx context.Context) (*dagger.Container, error) {
	return i.Pipeline.container(ctx, "frontend")
}

// Both images as docker-archive tarballs (backend.tar, frontend.tar): the
// bytes test-e-2-e checks and publish pushes.
func (i *Images) Tarballs(ctx context.Context) (*dagger.Directory, error) {
	c, err := sdk.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	in, err := i.Pipeline.inputs(ctx, c)
	if err != nil {
		return nil, err
	}
	kgci, err := daggerbuild.Kgci(c, spec.Profile(i.Pipeline.Profile), in)
	if err != nil {
		return nil, err
	}
	im, err := daggerbuild.Build(c, i.Pipeline.options(), in, kgci)
	if err != nil {
		return nil, err
	}
	dir := c.Directory().
		WithFile("backend.tar", im.Backend.Tarball).
		WithFile("frontend.tar", im.Frontend.Tarball)
	return loadDirectory(ctx, dir)
}

func (m *KidneyGenetics) container(ctx context.Context, name string) (*dagger.Container, error) {
	c, err := sdk.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	in, err := m.inputs(ctx, c)
	if err != nil {
		return nil, err
	}
	kgci, err := daggerbuild.Kgci(c, spec.Profile(m.Profile), in)
	if err != nil {
		return nil, err
	}
	im, err := daggerbuild.BuildImage(c, name, m.options(), in, kgci)
	if err != nil {
		return nil, err
	}
	id, err := im.Container(c).ID(ctx)
	if err != nil {
		return nil, err
	}
	return dag.LoadContainerFromID(dagger.ContainerID(id)), nil
}

// The kgci binary this pipeline runs inside Dagger (finalize, test-e2e,
// publish), built from --source.
func (m *KidneyGenetics) Kgci(ctx context.Context) (*dagger.File, error) {
	c, err := sdk.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	in, err := m.inputs(ctx, c)
	if err != nil {
		return nil, err
	}
	f, err := daggerbuild.Kgci(c, spec.Profile(m.Profile), in)
	if err != nil {
		return nil, err
	}
	id, err := f.ID(ctx)
	if err != nil {
		return nil, err
	}
	return dag.LoadFileFromID(dagger.FileID(id)), nil
}

// Build both images and run every end-to-end check of `kgci test-e2e` on
// them, in the production topology (docker-compose.prod.yml) inside a
// private Docker engine; return the results directory (summary.md,
// junit.xml, results.json with the tested digests, logs/ on failure).
// +cache="never"
func (m *KidneyGenetics) TestE2e(
	ctx context.Context,
	// Return the results even when checks fail.
	// +optional
	allowFailure bool,
	// Identifies the run in reports and container names (default: random).
	// +optional
	runId string,
) (*dagger.Directory, error) {
	c, err := sdk.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	t, err := m.test(ctx, c, runId)
	if t != nil && err != nil && allowFailure && errors.Is(err, daggerrun.ErrChecksFailed) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	return loadDirectory(ctx, t.Results)
}

// Build, test and push both images in one session: only images whose
// checks all passed are pushed, as exactly the tarballs that were tested.
// Returns the results directory with publish.json and publish.md (tested
// and pushed digest of each image). Tags: the version (if any) and, for a
// release X.Y.Z, X.Y and X where it is the newest of its line, the
// commit's first 12 hex digits, and latest for the newest release.
// +cache="never"
func (m *KidneyGenetics) Publish(
	ctx context.Context,
	// host[:port][/namespace], e.g. ghcr.io/kidney-genetics
	registry string,
	// +optional
	username string,
	// e.g. env://REGISTRY_TOKEN
	// +optional
	password *dagger.Secret,
	// Release version to tag, e.g. v1.2.3 (tagged 1.2.3, and 1.2, 1 and
	// latest where it is the newest release; not for pre-releases).
	// +optional
	version string,
	// Move the latest tag even when version is not the newest release.
	// +optional
	latest bool,
	// Plain HTTP, for a local test registry only.
	// +optional
	insecure bool,
	// When checks fail, return their results (and push nothing) instead of
	// an error.
	// +optional
	allowFailure bool,
	// Identifies the run in reports and container names (default: random).
	// +optional
	runId string,
) (*dagger.Directory, error) {
	c, err := sdk.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	o := daggerrun.PublishOptions{Registry: registry, Username: username, Revision: m.Revision, Version: version, Latest: latest, Insecure: insecure}
	if password != nil {
		id, err := password.ID(ctx)
		if err != nil {
			return nil, err
		}
		o.Password = c.LoadSecretFromID(sdk.SecretID(id))
	}
	// Refuse bad arguments before building anything.
	if _, err := daggerrun.PublishArgs(o); err != nil {
		return nil, err
	}
	t, err := m.test(ctx, c, runId)
	if t != nil && err != nil && allowFailure && errors.Is(err, daggerrun.ErrChecksFailed) {
		return loadDirectory(ctx, t.Results)
	}
	if err != nil {
		return nil, err
	}
	dir, err := daggerrun.Publish(ctx, t, o)
	if err != nil {
		return nil, err
	}
	return loadDirectory(ctx, dir)
}

func (m *KidneyGenetics) test(ctx context.Context, c *sdk.Client, runID string) (*daggerrun.Tested, error) {
	if runID == "" {
		runID = dockerstack.NewRunID()
	}
	in, err := m.inputs(ctx, c)
	if err != nil {
		return nil, err
	}
	kgci, err := daggerbuild.Kgci(c, spec.Profile(m.Profile), in)
	if err != nil {
		return nil, err
	}
	im, err := daggerbuild.Build(c, m.options(), in, kgci)
	if err != nil {
		return nil, err
	}
	tool, err := daggerbuild.SupplyChain(c, spec.Profile(m.Profile), in)
	if err != nil {
		return nil, err
	}
	var vulnDB *sdk.Directory
	if m.VulnDb != nil {
		id, err := m.VulnDb.ID(ctx)
		if err != nil {
			return nil, err
		}
		vulnDB = c.LoadDirectoryFromID(sdk.DirectoryID(id))
	}
	bases := spec.Bases(spec.Profile(m.Profile))
	pg, err := daggerbuild.Base(c, bases[spec.BasePostgres], in)
	if err != nil {
		return nil, err
	}
	docker, err := daggerbuild.Base(c, bases[spec.BaseDocker], in)
	if err != nil {
		return nil, err
	}
	return daggerrun.Test(ctx, c, daggerrun.Options{
		Profile: spec.Profile(m.Profile),
		Images: map[string]*sdk.File{
			"backend": im.Backend.Tarball, "frontend": im.Frontend.Tarball, "postgres": daggerbuild.Tarball(pg),
		},
		Kgci: kgci, SupplyChain: tool, Docker: docker, Source: in.Source, RunID: runID, VulnDB: vulnDB,
	})
}

// inputs hands the module's objects to dagger.io/dagger by ID: the
// module's generated types are distinct Go types from the library's
// (docs/dagger.md), and an ID names the same engine object in both.
func (m *KidneyGenetics) inputs(ctx context.Context, c *sdk.Client) (daggerbuild.Inputs, error) {
	var in daggerbuild.Inputs
	id, err := m.Source.ID(ctx)
	if err != nil {
		return in, err
	}
	in.Source = c.LoadDirectoryFromID(sdk.DirectoryID(id))
	if m.Bases != nil {
		id, err := m.Bases.ID(ctx)
		if err != nil {
			return in, err
		}
		in.Bases = c.LoadDirectoryFromID(sdk.DirectoryID(id))
	}
	if m.HostCa != nil {
		id, err := m.HostCa.ID(ctx)
		if err != nil {
			return in, err
		}
		in.HostCA = c.LoadSecretFromID(sdk.SecretID(id))
	}
	return in, nil
}

func loadDirectory(ctx context.Context, d *sdk.Directory) (*dagger.Directory, error) {
	id, err := d.ID(ctx)
	if err != nil {
		return nil, err
	}
	return dag.LoadDirectoryFromID(dagger.DirectoryID(id)), nil
}
