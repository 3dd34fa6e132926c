// Package daggerbuild turns the image description in ci/spec into Dagger
// container calls, using the published dagger.io/dagger types so that the
// same code serves the Dagger module (main.go at the repository root) and
// the engine-free tests of ci/daggertest.
//
// An image is built in two parts: the stages, translated op by op, and
// the runtime configuration, which `kgci finalize` writes into the
// exported tarball with the code `kgci build` uses (ci/imageconfig),
// because Dagger's container API cannot set HEALTHCHECK or STOPSIGNAL.
// The tarball is what the pipeline tests and publishes.
//
// Everything here is lazy: it only builds a call chain. Nothing reaches the
// engine until a caller asks for a value (Sync, ID, Export, Contents).
package daggerbuild

import (
	"context"
	"fmt"
	"strings"

	"dagger.io/dagger"
	"golang.org/x/sync/errgroup"

	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// Inputs are the things a build reads besides the description.
type Inputs struct {
	// Source is the repository root.
	Source *dagger.Directory
	// Bases holds one image tarball per base kind (python.tar, ...,
	// go.tar, docker.tar); only the offline profile reads it.
	// docs/dagger.md shows how to make them.
	Bases *dagger.Directory
	// HostCA is the CA bundle that Run steps with HostCA mount; only the
	// offline profile has such steps.
	HostCA *dagger.Secret
}

// Image is one built image.
type Image struct {
	Name string
	// Tarball is the finished image as a docker-archive: what the
	// end-to-end checks load and what publish pushes, byte for byte.
	Tarball *dagger.File
}

// Container is the image as a Dagger container, for chaining (export,
// terminal, publish of your own).
func (im Image) Container(c *dagger.Client) *dagger.Container {
	return c.Container().Import(im.Tarball)
}

// Images are both production images.
type Images struct {
	Backend, Frontend Image
}

// Build describes both images for the options.
func Build(c *dagger.Client, o spec.Options, in Inputs, kgci *dagger.File) (Images, error) {
	var out Images
	var err error
	if out.Backend, err = BuildImage(c, "backend", o, in, kgci); err != nil {
		return Images{}, err
	}
	if out.Frontend, err = BuildImage(c, "frontend", o, in, kgci); err != nil {
		return Images{}, err
	}
	return out, nil
}

// BuildImage describes one image: its stages, then `kgci finalize`.
func BuildImage(c *dagger.Client, name string, o spec.Options, in Inputs, kgci *dagger.File) (Image, error) {
	if err := o.Validate(); err != nil {
		return Image{}, err
	}
	im, err := spec.ByName(o, name)
	if err != nil {
		return Image{}, err
	}
	raw, err := Stages(c, im, o.Profile, in)
	if err != nil {
		return Image{}, err
	}
	return Image{Name: name, Tarball: Finalize(c, kgci, raw, im.Name, o)}, nil
}

// Sync builds both images in parallel and fails with the first error.
func (im Images) Sync(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, i := range []Image{im.Backend, im.Frontend} {
		g.Go(func() error {
			if _, err := i.Tarball.Sync(ctx); err != nil {
				return fmt.Errorf("build %s: %w", i.Name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// Finalize runs `kgci finalize` on the image Dagger built: the same config
// writer as `kgci build` (ci/imageconfig), including HEALTHCHECK and
// STOPSIGNAL. kgci is a static binary, so it runs in an empty container.
func Finalize(c *dagger.Client, kgci *dagger.File, raw *dagger.Container, image string, o spec.Options) *dagger.File {
	const in, out = "/in/image.tar", "/out/image.tar"
	return c.Container().
		WithMountedFile("/kgci", kgci).
		WithMountedFile(in, raw.AsTarball(dagger.ContainerAsTarballOpts{MediaTypes: dagger.ImageMediaTypesDockerMediaTypes})).
		WithMountedTemp("/tmp").
		WithExec(FinalizeArgs(image, o, in, out)).
		File(out)
}

// FinalizeArgs is the finalize command line (ci/cmd/kgci/finalize.go).
func FinalizeArgs(image string, o spec.Options, in, out string) []string {
	return []string{"/kgci", "finalize", "--image", image, "--profile", string(o.Profile),
		"--revision", o.Revision, "--created", o.Created, "--in", in, "--out", out}
}

// Kgci builds the kgci binary from the repository in the profile's Go
// base: the Dagger path runs the same commands as our CI (finalize,
// test-e2e, publish). Static, so it runs in any container.
func Kgci(c *dagger.Client, p spec.Profile, in Inputs) (*dagger.File, error) {
	return goBuild(c, p, in, ".", "./ci/cmd/kgci", "kgci")
}

// SupplyChain is kgci-supplychain (syft, grype), which test-e2e runs for the
// supplychain.* checks: a module of its own (ci/supplychain), whose newer Go the
// engine's Go SDK need not have, as it is built here in the profile's Go image.
func SupplyChain(c *dagger.Client, p spec.Profile, in Inputs) (*dagger.File, error) {
	return goBuild(c, p, in, "ci/supplychain", "./cmd/kgci-supplychain", "kgci-supplychain")
}

// goBuild builds one command of the repository in the profile's Go image, with
// the module and build caches shared by every build.
func goBuild(c *dagger.Client, p spec.Profile, in Inputs, dir, pkg, out string) (*dagger.File, error) {
	base, err := Base(c, spec.Bases(p)[spec.BaseGo], in)
	if err != nil {
		return nil, err
	}
	src := in.Source.Filter(dagger.DirectoryFilterOpts{Include: []string{"go.mod", "go.sum", "ci/"}})
	args := []string{"go", "build"}
	if dir != "." {
		args = append(args, "-C", dir)
	}
	args = append(args, "-trimpath", "-buildvcs=false", "-o", "/out/"+out, pkg)
	return base.
		WithMountedCache("/go/pkg/mod", c.CacheVolume("kidney-go-mod")).
		WithMountedCache("/root/.cache/go-build", c.CacheVolume("kidney-go-build")).
		WithEnvVariable("GOMODCACHE", "/go/pkg/mod").
		WithEnvVariable("GOCACHE", "/root/.cache/go-build").
		WithEnvVariable("CGO_ENABLED", "0").
		// go.mod's go line is what matters; never fetch another toolchain.
		WithEnvVariable("GOTOOLCHAIN", "local").
		WithDirectory("/src", src).
		WithWorkdir("/src").
		WithExec(args).
		File("/out/" + out), nil
}

// Tarball exports a container (a base image) as a docker-archive that
// `docker load` and `kgci test-e2e --images` read.
func Tarball(ctr *dagger.Container) *dagger.File {
	return ctr.AsTarball(dagger.ContainerAsTarballOpts{MediaTypes: dagger.ImageMediaTypesDockerMediaTypes})
}

// Base returns the container a stage starts from.
func Base(c *dagger.Client, src spec.Source, in Inputs) (*dagger.Container, error) {
	if !src.Layout {
		return c.Container().From(src.Ref), nil
	}
	if in.Bases == nil {
		return nil, fmt.Errorf("the offline profile needs base image tarballs (%s.tar and the others): pass a directory holding them (dagger call --bases=DIR ...); docs/dagger.md shows how to make them with scripts/make-base-images.sh", src.Ref)
	}
	// The layouts made by scripts/make-base-images.sh name their one
	// manifest with org.opencontainers.image.ref.name=<kind>; the tag
	// selects it.
	return c.Container().Import(in.Bases.File(src.Ref+".tar"), dagger.ContainerImportOpts{Tag: src.Ref}), nil
}

// Stages describes an image's stages in order and returns the last one,
// without the runtime configuration (Finalize writes that).
func Stages(c *dagger.Client, im spec.Image, p spec.Profile, in Inputs) (*dagger.Container, error) {
	if err := im.Validate(); err != nil {
		return nil, err
	}
	if in.Source == nil {
		return nil, fmt.Errorf("image %s: no source directory", im.Name)
	}
	bases := spec.Bases(p)
	stages := map[string]*dagger.Container{}
	var last *dagger.Container
	for _, st := range im.Stages {
		src, ok := bases[st.Base]
		if !ok {
			return nil, fmt.Errorf("image %s stage %s: profile %q has no base %q", im.Name, st.Name, p, st.Base)
		}
		base, err := Base(c, src, in)
		if err != nil {
			return nil, fmt.Errorf("image %s stage %s: %w", im.Name, st.Name, err)
		}
		ctr, err := stage(c, base, st, stages, in)
		if err != nil {
			return nil, fmt.Errorf("image %s stage %s: %w", im.Name, st.Name, err)
		}
		stages[st.Name] = ctr
		last = ctr
	}
	return last, nil
}

// stageState follows what Dagger keeps in the container between calls, so
// that step-scoped settings can be put back afterwards.
type stageState struct {
	env map[string]string
}

func stage(c *dagger.Client, ctr *dagger.Container, st spec.Stage, stages map[string]*dagger.Container, in Inputs) (*dagger.Container, error) {
	s := stageState{env: map[string]string{}}
	for n, op := range st.Ops {
		var err error
		ctr, err = apply(c, ctr, op, &s, stages, in)
		if err != nil {
			return nil, fmt.Errorf("op %d (%T): %w", n, op, err)
		}
	}
	return ctr, nil
}

func apply(c *dagger.Client, ctr *dagger.Container, op spec.Op, s *stageState, stages map[string]*dagger.Container, in Inputs) (*dagger.Container, error) {
	switch op := op.(type) {
	case spec.Workdir:
		return ctr.WithWorkdir(op.Path), nil
	case spec.Env:
		s.env[op.Key] = op.Value
		return ctr.WithEnvVariable(op.Key, op.Value), nil
	// The copy ops' one meaning (spec.CopySrc): a directory's contents
	// into To, or one file at To, with the owner; modes are the source's.
	case spec.CopySrc:
		from := op.SourcePath()
		if op.Dir {
			return ctr.WithDirectory(op.To, in.Source.Directory(from), dagger.ContainerWithDirectoryOpts{Owner: op.Owner, Exclude: op.Exclude}), nil
		}
		return ctr.WithFile(op.To, in.Source.File(from), dagger.ContainerWithFileOpts{Owner: op.Owner}), nil
	case spec.CopyStage:
		from, ok := stages[op.Stage]
		if !ok {
			return nil, fmt.Errorf("copy from stage %q, which is not an earlier stage", op.Stage)
		}
		if op.Dir {
			return ctr.WithDirectory(op.To, from.Directory(op.From), dagger.ContainerWithDirectoryOpts{Owner: op.Owner}), nil
		}
		return ctr.WithFile(op.To, from.File(op.From), dagger.ContainerWithFileOpts{Owner: op.Owner}), nil
	case spec.CopyImage:
		return ctr.WithFile(op.To, c.Container().From(op.Ref).File(op.From)), nil
	case spec.Run:
		return run(c, ctr, op, s, in)
	}
	return nil, fmt.Errorf("daggerbuild does not know the op type %T; add it here and in ci/llbgraph", op)
}

// run mounts what a step needs, runs it and takes everything step-scoped
// away again, so that neither the cache mounts, the CA bundle nor the
// step's environment reach later steps or the image.
func run(c *dagger.Client, ctr *dagger.Container, r spec.Run, s *stageState, in Inputs) (*dagger.Container, error) {
	for _, kv := range r.Env {
		ctr = ctr.WithEnvVariable(kv.Key, kv.Value)
	}
	for _, cache := range r.Caches {
		sharing := dagger.CacheSharingModeShared
		if cache.Locked {
			sharing = dagger.CacheSharingModeLocked
		}
		ctr = ctr.WithMountedCache(cache.Path, c.CacheVolume(cache.ID), dagger.ContainerWithMountedCacheOpts{Sharing: sharing})
	}
	if r.HostCA {
		if in.HostCA == nil {
			return nil, fmt.Errorf("step %q needs the host's CA bundle: pass it as a secret (dagger call --host-ca=file:/etc/ssl/certs/ca-certificates.crt ...)", strings.Join(r.Args, " "))
		}
		ctr = ctr.WithMountedSecret(spec.HostCAPath, in.HostCA)
	}

	ctr = ctr.WithExec(r.Args)

	if r.HostCA {
		ctr = ctr.WithoutMount(spec.HostCAPath)
	}
	for _, cache := range r.Caches {
		ctr = ctr.WithoutMount(cache.Path)
	}
	for _, kv := range r.Env {
		if prev, ok := s.env[kv.Key]; ok {
			ctr = ctr.WithEnvVariable(kv.Key, prev)
		} else {
			ctr = ctr.WithoutEnvVariable(kv.Key)
		}
	}
	return ctr, nil
}
