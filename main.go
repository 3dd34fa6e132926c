// Build, test and publish the Kidney Genetics Database images with Dagger.
//
// The images are described once, in ci/spec; ci/daggerbuild turns that
// description into Dagger calls and ci/daggere2e runs the end-to-end
// checks on Dagger services. This file only adapts them to the Dagger
// module API: see docs/dagger.md.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	sdk "dagger.io/dagger"

	"github.com/kidney-genetics/kidney-genetics-db/ci/daggerbuild"
	"github.com/kidney-genetics/kidney-genetics-db/ci/daggere2e"
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
}

func New(
	// The repository.
	// +defaultPath="/"
	// +ignore=["**/node_modules", "**/dist", "results", "out", "bin", "bases", "bench/out", ".git", "frontend/e2e-output", "**/__pycache__", "**/.pytest_cache", "**/*.tar", "**/*.oci"]
	source *dagger.Directory,
	// Where base images and packages come from: "upstream" (public
	// registries, uv, npm) or "offline" (local base image tarballs).
	// +optional
	// +default="upstream"
	profile string,
	// Offline profile only: a directory with python.tar, node.tar,
	// nginx.tar and postgres.tar, OCI layouts made by
	// scripts/make-base-images.sh (docs/dagger.md).
	// +optional
	bases *dagger.Directory,
	// Offline profile only: the CA bundle npm must trust behind a
	// TLS-re-signing proxy, e.g. file:/etc/ssl/certs/ca-certificates.crt.
	// +optional
	hostCa *dagger.Secret,
	// Git revision recorded in the org.opencontainers.image.revision label.
	// +optional
	revision string,
	// Build time (RFC 3339) recorded in the org.opencontainers.image.created label.
	// +optional
	created string,
) (*KidneyGenetics, error) {
	p, err := spec.ParseProfile(profile)
	if err != nil {
		return nil, err
	}
	return &KidneyGenetics{Source: source, Profile: string(p), Bases: bases, HostCa: hostCa, Revision: revision, Created: created}, nil
}

// Images are the two production images.
type Images struct {
	// The FastAPI backend, listening on 8000.
	Backend *dagger.Container
	// The Vue frontend served by non-root nginx on 8080.
	Frontend *dagger.Container
}

// Build the backend and frontend images.
func (m *KidneyGenetics) Build(ctx context.Context) (*Images, error) {
	c, err := sdk.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	im, err := m.build(ctx, c)
	if err != nil {
		return nil, err
	}
	backend, err := toModule(ctx, im.Backend)
	if err != nil {
		return nil, err
	}
	frontend, err := toModule(ctx, im.Frontend)
	if err != nil {
		return nil, err
	}
	return &Images{Backend: backend, Frontend: frontend}, nil
}

// Run the end-to-end checks against both images with PostgreSQL, and
// return the results directory (junit.xml, summary.md, results.json).
// +cache="never"
func (m *KidneyGenetics) TestE2e(
	ctx context.Context,
	// Return the results even when checks fail.
	// +optional
	allowFailure bool,
	// A container with a Go toolchain for the checker (default: the
	// golang image); the offline profile has none of its own.
	// +optional
	checker *dagger.Container,
	// Identifies the run; every new value runs everything again instead
	// of answering from the cache (default: random).
	// +optional
	runId string,
) (*dagger.Directory, error) {
	c, err := sdk.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	im, err := m.build(ctx, c)
	if err != nil {
		return nil, err
	}
	in, err := m.inputs(ctx, c)
	if err != nil {
		return nil, err
	}
	pg, err := daggerbuild.Base(c, spec.Bases(spec.Profile(m.Profile))[spec.BasePostgres], in)
	if err != nil {
		return nil, err
	}
	if runId == "" {
		runId = randomID()
	}
	o := daggere2e.Options{Profile: spec.Profile(m.Profile), Images: im, Postgres: pg, Source: in.Source, RunID: runId, AllowFailure: allowFailure}
	if checker != nil {
		if o.Checker, err = toSDK(ctx, c, checker); err != nil {
			return nil, err
		}
	}
	res, err := daggere2e.Run(ctx, c, o)
	if err != nil {
		return nil, err
	}
	id, err := res.Results.ID(ctx)
	if err != nil {
		return nil, err
	}
	return dag.LoadDirectoryFromID(dagger.DirectoryID(id)), nil
}

// Push both images to a registry under every tag; prints one digest-pinned
// reference (repository:tag@sha256:...) per image and tag.
// +cache="never"
func (m *KidneyGenetics) Publish(
	ctx context.Context,
	// host[:port][/namespace], e.g. ghcr.io/kidney-genetics
	registry string,
	// +optional
	username string,
	// e.g. env:REGISTRY_TOKEN
	// +optional
	password *dagger.Secret,
	tags []string,
) (string, error) {
	c, err := sdk.Connect(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	im, err := m.build(ctx, c)
	if err != nil {
		return "", err
	}
	o := daggerbuild.PublishOptions{Registry: registry, Username: username, Tags: tags, Revision: m.Revision}
	if password != nil {
		id, err := password.ID(ctx)
		if err != nil {
			return "", err
		}
		o.Password = c.LoadSecretFromID(sdk.SecretID(id))
	}
	res, err := daggerbuild.Publish(ctx, im, o)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, p := range res.Images {
		for _, t := range p.Tags {
			fmt.Fprintln(&b, t.Pinned)
		}
	}
	return b.String(), nil
}

func (m *KidneyGenetics) build(ctx context.Context, c *sdk.Client) (daggerbuild.Images, error) {
	in, err := m.inputs(ctx, c)
	if err != nil {
		return daggerbuild.Images{}, err
	}
	return daggerbuild.Build(c, spec.Options{Profile: spec.Profile(m.Profile), Revision: m.Revision, Created: m.Created}, in)
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

func toModule(ctx context.Context, ctr *sdk.Container) (*dagger.Container, error) {
	id, err := ctr.ID(ctx)
	if err != nil {
		return nil, err
	}
	return dag.LoadContainerFromID(dagger.ContainerID(id)), nil
}

func toSDK(ctx context.Context, c *sdk.Client, ctr *dagger.Container) (*sdk.Container, error) {
	id, err := ctr.ID(ctx)
	if err != nil {
		return nil, err
	}
	return c.LoadContainerFromID(sdk.ContainerID(id)), nil
}

func randomID() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
