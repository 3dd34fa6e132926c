// Package daggerbuild turns the image description in ci/spec into Dagger
// container calls, using the published dagger.io/dagger types so that the
// same code serves the Dagger module (main.go at the repository root) and
// any program that connects to an engine itself.
//
// Everything here is lazy: it only builds a call chain. Nothing reaches the
// engine until a caller asks for a value (Sync, ID, Publish, Export).
package daggerbuild

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"dagger.io/dagger"
	"golang.org/x/sync/errgroup"

	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// Labels that carry what Dagger's container API cannot express. Dagger has
// no HEALTHCHECK or STOPSIGNAL setter (dagger.io/dagger v0.20.0), so the
// images built here record them as labels; docs/dagger.md says how to get
// them back when running the image under Docker or compose.
const (
	HealthcheckLabel = "org.kidney-genetics.healthcheck"
	StopSignalLabel  = "org.kidney-genetics.stopsignal"
)

// Inputs are the things a build reads besides the description.
type Inputs struct {
	// Source is the repository root.
	Source *dagger.Directory
	// Bases holds one OCI image layout tarball per base kind
	// (python.tar, node.tar, nginx.tar, postgres.tar); only the offline
	// profile reads it. docs/dagger.md shows how to make them.
	Bases *dagger.Directory
	// HostCA is the CA bundle that Run steps with HostCA mount; only the
	// offline profile has such steps.
	HostCA *dagger.Secret
}

// Images are both production images.
type Images struct {
	Backend  *dagger.Container
	Frontend *dagger.Container
}

// Build describes both images for the options.
func Build(c *dagger.Client, o spec.Options, in Inputs) (Images, error) {
	var out Images
	for _, im := range spec.Images(o) {
		ctr, err := Image(c, im, o.Profile, in)
		if err != nil {
			return Images{}, err
		}
		switch im.Name {
		case "backend":
			out.Backend = ctr
		case "frontend":
			out.Frontend = ctr
		default:
			return Images{}, fmt.Errorf("ci/spec returned an image called %q; daggerbuild knows backend and frontend", im.Name)
		}
	}
	return out, nil
}

// Sync builds both images in parallel and fails with the first error.
func (im Images) Sync(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for name, ctr := range map[string]*dagger.Container{"backend": im.Backend, "frontend": im.Frontend} {
		g.Go(func() error {
			if _, err := ctr.Sync(ctx); err != nil {
				return fmt.Errorf("build %s: %w", name, err)
			}
			return nil
		})
	}
	return g.Wait()
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

// Image describes one image: every stage in order, then the runtime
// configuration on the last one.
func Image(c *dagger.Client, im spec.Image, p spec.Profile, in Inputs) (*dagger.Container, error) {
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
	return Configure(last, im.Config)
}

// stageState follows what Dagger keeps in the container between calls, so
// that step-scoped settings can be put back afterwards.
type stageState struct {
	env     map[string]string
	workdir string
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
		s.workdir = op.Path
		return ctr.WithWorkdir(op.Path), nil
	case spec.Env:
		s.env[op.Key] = op.Value
		return ctr.WithEnvVariable(op.Key, op.Value), nil
	case spec.CopySrc:
		from := strings.TrimSuffix(op.From, "/")
		if op.Dir {
			return ctr.WithDirectory(op.To, in.Source.Directory(from), dagger.ContainerWithDirectoryOpts{Owner: op.Owner, Exclude: op.Exclude}), nil
		}
		if len(op.Exclude) > 0 {
			return nil, fmt.Errorf("copy of the file %s has exclude patterns; they only make sense for a directory (set Dir)", op.From)
		}
		return ctr.WithFile(op.To, in.Source.File(from), dagger.ContainerWithFileOpts{Owner: op.Owner}), nil
	case spec.CopyStage:
		from, ok := stages[op.Stage]
		if !ok {
			return nil, fmt.Errorf("copy from stage %q, which is not an earlier stage", op.Stage)
		}
		// Every CopyStage in ci/spec copies a directory's contents (the
		// venv, dist/), as BuildKit's copy of a directory does.
		return ctr.WithDirectory(op.To, from.Directory(op.From), dagger.ContainerWithDirectoryOpts{Owner: op.Owner}), nil
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
	if r.Dir != "" {
		if s.workdir == "" {
			return nil, fmt.Errorf("step %q sets Dir without an earlier Workdir in the stage: the base image's working directory cannot be restored afterwards; add a Workdir op", strings.Join(r.Args, " "))
		}
		ctr = ctr.WithWorkdir(r.Dir)
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
	if r.Dir != "" {
		ctr = ctr.WithWorkdir(s.workdir)
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

// Configure sets the runtime configuration of an image.
func Configure(ctr *dagger.Container, cfg spec.Config) (*dagger.Container, error) {
	for _, kv := range cfg.Env {
		ctr = ctr.WithEnvVariable(kv.Key, kv.Value)
	}
	if cfg.WorkingDir != "" {
		ctr = ctr.WithWorkdir(cfg.WorkingDir)
	}
	// With no entrypoint of its own an image keeps its base's, as in a
	// Dockerfile; withEntrypoint would also drop the default args, so the
	// command is set after it.
	if len(cfg.Entrypoint) > 0 {
		ctr = ctr.WithEntrypoint(cfg.Entrypoint)
	}
	if len(cfg.Cmd) > 0 {
		ctr = ctr.WithDefaultArgs(cfg.Cmd)
	}
	for _, p := range cfg.ExposedPorts {
		port, proto, err := parsePort(p)
		if err != nil {
			return nil, err
		}
		ctr = ctr.WithExposedPort(port, dagger.ContainerWithExposedPortOpts{Protocol: proto})
	}
	labels := map[string]string{}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	if cfg.Healthcheck != nil {
		b, err := json.Marshal(HealthcheckJSON(*cfg.Healthcheck))
		if err != nil {
			return nil, err
		}
		labels[HealthcheckLabel] = string(b)
	}
	if cfg.StopSignal != "" {
		labels[StopSignalLabel] = cfg.StopSignal
	}
	for _, k := range spec.SortedKeys(labels) {
		ctr = ctr.WithLabel(k, labels[k])
	}
	// Last, so that every step above ran as root and the image runs as
	// the non-root user.
	return ctr.WithUser(cfg.User), nil
}

// Healthcheck is the label's JSON: Docker's HEALTHCHECK fields with
// durations as Go duration strings, so that it reads like `docker inspect`.
type Healthcheck struct {
	Test        []string `json:"Test"`
	Interval    string   `json:"Interval"`
	Timeout     string   `json:"Timeout"`
	StartPeriod string   `json:"StartPeriod"`
	Retries     int      `json:"Retries"`
}

// HealthcheckJSON converts the spec's health check for the label.
func HealthcheckJSON(h spec.Healthcheck) Healthcheck {
	sec := func(n int) string { return strconv.Itoa(n) + "s" }
	return Healthcheck{Test: h.Test, Interval: sec(h.Interval), Timeout: sec(h.Timeout), StartPeriod: sec(h.StartPeriod), Retries: h.Retries}
}

func parsePort(s string) (int, dagger.NetworkProtocol, error) {
	num, proto, _ := strings.Cut(s, "/")
	port, err := strconv.Atoi(num)
	if err != nil || port < 1 || port > 65535 {
		return 0, "", fmt.Errorf("exposed port %q: want NUMBER/tcp or NUMBER/udp", s)
	}
	switch proto {
	case "", "tcp":
		return port, dagger.NetworkProtocolTcp, nil
	case "udp":
		return port, dagger.NetworkProtocolUdp, nil
	}
	return 0, "", fmt.Errorf("exposed port %q: unknown protocol %q", s, proto)
}
