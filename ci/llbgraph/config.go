package llbgraph

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/moby/buildkit/client/llb"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// ImageConfig returns the OCI image config JSON (with Docker's Healthcheck
// extension) for img. final is Build's result: its env (the base image's
// plus the final stage's Env ops) is inherited the way FROM/ENV would, with
// spec.Config.Env taking precedence. rootfs and history are left to the
// exporter, which fills them from the layers it writes.
func ImageConfig(ctx context.Context, img spec.Image, final llb.State, in Inputs) ([]byte, error) {
	c := img.Config
	p := in.platform()
	out := dockerspec.DockerOCIImage{
		Image: ocispecs.Image{
			Platform: ocispecs.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant},
		},
	}
	if t, err := time.Parse(time.RFC3339, c.Labels[ocispecs.AnnotationCreated]); err == nil {
		// The build time is an input (spec.Options.Created), not now(), so
		// the same revision gives the same config.
		t = t.UTC()
		out.Created = &t
	}
	env, err := final.Env(ctx, llb.Platform(p))
	if err != nil {
		return nil, fmt.Errorf("image %s: resolving env: %w", img.Name, err)
	}
	for _, kv := range c.Env {
		env = env.AddOrReplace(kv.Key, kv.Value)
	}
	cfg := &out.Config
	cfg.User = c.User
	cfg.Env = env.ToArray()
	cfg.Entrypoint = c.Entrypoint
	cfg.Cmd = c.Cmd
	cfg.WorkingDir = c.WorkingDir
	cfg.StopSignal = c.StopSignal
	if len(c.Labels) > 0 {
		cfg.Labels = map[string]string{}
		for k, v := range c.Labels {
			cfg.Labels[k] = v
		}
	}
	if len(c.ExposedPorts) > 0 {
		cfg.ExposedPorts = map[string]struct{}{}
		for _, port := range c.ExposedPorts {
			if !strings.Contains(port, "/") {
				port += "/tcp"
			}
			cfg.ExposedPorts[port] = struct{}{}
		}
	}
	if h := c.Healthcheck; h != nil {
		cfg.Healthcheck = &dockerspec.HealthcheckConfig{
			Test:        h.Test,
			Interval:    time.Duration(h.Interval) * time.Second,
			Timeout:     time.Duration(h.Timeout) * time.Second,
			StartPeriod: time.Duration(h.StartPeriod) * time.Second,
			Retries:     h.Retries,
		}
	}
	out.RootFS = ocispecs.RootFS{Type: "layers"}
	return json.Marshal(out)
}

func parseConfig(dt []byte) (dockerspec.DockerOCIImage, error) {
	var img dockerspec.DockerOCIImage
	if err := json.Unmarshal(dt, &img); err != nil {
		return img, err
	}
	return img, nil
}
