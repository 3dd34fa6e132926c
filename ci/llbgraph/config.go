package llbgraph

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/moby/buildkit/client/llb"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kidney-genetics/kidney-genetics-db/ci/imageconfig"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// ImageConfig returns the OCI image config JSON (with Docker's Healthcheck
// extension) for img. final is Build's result: its env (the base image's
// plus the final stage's Env ops) is inherited the way FROM/ENV would;
// ci/imageconfig does the rest, as it does for the Dagger path. rootfs and
// history are left to the exporter, which fills them from the layers it
// writes.
func ImageConfig(ctx context.Context, img spec.Image, final llb.State, in Inputs) ([]byte, error) {
	p := in.platform()
	env, err := final.Env(ctx, llb.Platform(p))
	if err != nil {
		return nil, fmt.Errorf("image %s: resolving env: %w", img.Name, err)
	}
	var inherited dockerspec.DockerOCIImage
	inherited.Platform = ocispecs.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
	inherited.Config.Env = env.ToArray()
	return json.Marshal(imageconfig.Apply(inherited, img.Config))
}

func parseConfig(dt []byte) (dockerspec.DockerOCIImage, error) {
	var img dockerspec.DockerOCIImage
	if err := json.Unmarshal(dt, &img); err != nil {
		return img, err
	}
	return img, nil
}
