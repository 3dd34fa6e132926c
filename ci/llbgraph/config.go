package llbgraph

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kidney-genetics/kidney-genetics-db/ci/imageconfig"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// ImageConfig returns the OCI image config JSON (with Docker's Healthcheck
// extension) for img. final is Build's result: its env (the base image's
// plus the final stage's Env ops) is inherited the way FROM/ENV would;
// ci/imageconfig does the rest, as it does for the Dagger path. rootfs is
// left to the exporter, which fills it from the layers it writes; the
// history is ours (History).
func ImageConfig(ctx context.Context, img spec.Image, final llb.State, in Inputs) ([]byte, error) {
	p := in.platform()
	env, err := final.Env(ctx, llb.Platform(p))
	if err != nil {
		return nil, fmt.Errorf("image %s: resolving env: %w", img.Name, err)
	}
	var inherited dockerspec.DockerOCIImage
	inherited.Platform = ocispecs.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
	inherited.Config.Env = env.ToArray()
	if inherited.History, err = History(ctx, img, in); err != nil {
		return nil, fmt.Errorf("image %s: %w", img.Name, err)
	}
	return json.Marshal(imageconfig.Apply(inherited, img.Config))
}

// History is the history of img's layers: the final stage's base layers, then
// one entry per op of the final stage, each of which makes one layer, named
// like its build step and dated with the image's creation time. Without it
// BuildKit's exporter makes one up from the layers it holds, and those differ
// by where a layer came from: a step built here is named after the step and
// dated when it ran, one imported from a cache is "imported sha256:...". The
// same sources then gave two image digests, and a builder that imported every
// step from a registry cache never produced the image CI tested. Nil when the
// base's layers cannot be counted (an upstream base without a Resolver):
// the exporter's history then, as before.
func History(ctx context.Context, img spec.Image, in Inputs) ([]ocispecs.History, error) {
	final := img.Stages[len(img.Stages)-1]
	base, ref, err := baseConfig(ctx, final.Base, in)
	if err != nil || base == nil {
		return nil, err
	}
	created := imageconfig.Created(img.Config)
	if created == nil {
		created = base.Created
	}
	if created == nil {
		epoch := time.Unix(0, 0).UTC()
		created = &epoch
	}
	var h []ocispecs.History
	layers := 0
	for _, e := range base.History {
		if !e.EmptyLayer {
			layers++
		}
	}
	if layers == len(base.RootFS.DiffIDs) {
		h = append(h, base.History...)
	} else {
		// The base's own history does not account for its layers (ours are made
		// from Debian packages with none): one entry per layer, as FROM.
		for range base.RootFS.DiffIDs {
			h = append(h, ocispecs.History{CreatedBy: "FROM " + ref})
		}
	}
	for i := range h {
		if h[i].Created == nil {
			c := base.Created
			if c == nil {
				c = created
			}
			h[i].Created = c
		}
	}
	for n, o := range final.Ops {
		e := ocispecs.History{Created: created, CreatedBy: StepName(img, final, n, o)}
		if _, ok := o.(spec.Env); ok {
			e.EmptyLayer = true
		}
		h = append(h, e)
	}
	return h, nil
}

// baseConfig is the image config of base k and the reference it is known by;
// nil when it cannot be read (an upstream base without a Resolver).
func baseConfig(ctx context.Context, k spec.BaseKind, in Inputs) (*ocispecs.Image, string, error) {
	src, ok := spec.Bases(in.Profile)[k]
	if !ok {
		return nil, "", fmt.Errorf("profile %s has no %s base", in.Profile, k)
	}
	var dt []byte
	ref := src.Ref
	if src.Layout {
		l, ok := in.Layouts[k]
		if !ok {
			return nil, "", fmt.Errorf("%w: no layout given for base %q", ErrMissingLayout, k)
		}
		dt, ref = l.Config, layoutName(l)
	} else {
		if in.Resolver == nil {
			return nil, "", nil
		}
		p := in.platform()
		var err error
		if _, _, dt, err = in.Resolver.ResolveImageConfig(ctx, src.Ref, sourceresolver.Opt{
			ImageOpt: &sourceresolver.ResolveImageOpt{Platform: &p},
		}); err != nil {
			return nil, "", fmt.Errorf("base %s: %w", src.Ref, err)
		}
	}
	var c ocispecs.Image
	if err := json.Unmarshal(dt, &c); err != nil {
		return nil, "", fmt.Errorf("base %s: image config: %w", ref, err)
	}
	return &c, ref, nil
}

func parseConfig(dt []byte) (dockerspec.DockerOCIImage, error) {
	var img dockerspec.DockerOCIImage
	if err := json.Unmarshal(dt, &img); err != nil {
		return img, err
	}
	return img, nil
}
