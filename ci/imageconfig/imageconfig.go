// Package imageconfig writes ci/spec's runtime configuration into an image
// config. Both engines go through it: BuildKit's export (ci/llbgraph) and,
// on the Dagger path, `kgci finalize` on the tarball Dagger exported,
// because Dagger's container API cannot set HEALTHCHECK or STOPSIGNAL
// (docs/dagger.md). One translation, so the two engines' images cannot
// differ in user, entrypoint, health check or labels.
package imageconfig

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// Created is the image's creation time, from its created label (UTC); nil
// when the label is missing or not RFC 3339.
func Created(c spec.Config) *time.Time {
	t, err := time.Parse(time.RFC3339, c.Labels[ocispecs.AnnotationCreated])
	if err != nil {
		return nil
	}
	t = t.UTC()
	return &t
}

// Apply returns img with the configuration c describes. It keeps what the
// build made (rootfs, history, platform) and the environment the stages
// inherited (the base image's ENV plus the stages' Env ops, with c.Env
// winning); everything else comes from c alone, so the result does not
// depend on the base image's entrypoint, command, ports, volumes or labels.
func Apply(img dockerspec.DockerOCIImage, c spec.Config) dockerspec.DockerOCIImage {
	out := dockerspec.DockerOCIImage{
		Image: ocispecs.Image{Platform: img.Platform, RootFS: img.RootFS, History: img.History},
	}
	if out.RootFS.Type == "" {
		out.RootFS.Type = "layers"
	}
	// The build time is an input (spec.Options.Created), not now(), so
	// the same revision gives the same config.
	out.Created = Created(c)
	env := img.Config.Env
	for _, kv := range c.Env {
		env = setEnv(env, kv.Key, kv.Value)
	}
	cfg := &out.Config
	cfg.User = c.User
	cfg.Env = env
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
	return out
}

// setEnv sets KEY, moving it to the end as BuildKit's llb.EnvList does
// when a later ENV overrides an earlier one.
func setEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != key {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// Rewrite reads the single image of the docker-archive tarball in, applies
// c to its config, and writes the result to out as a docker-archive tagged
// tag. Layers are copied byte for byte; only the config and the manifest
// change. It returns the new image's manifest digest.
func Rewrite(in, out, tag string, c spec.Config) (v1.Hash, error) {
	img, err := tarball.ImageFromPath(in, nil)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("read docker-archive %s: %w (Dagger: Container.asTarball(mediaTypes: DockerMediaTypes))", in, err)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("%s: read config: %w", in, err)
	}
	var cur dockerspec.DockerOCIImage
	if err := json.Unmarshal(raw, &cur); err != nil {
		return v1.Hash{}, fmt.Errorf("%s: parse config: %w", in, err)
	}
	b, err := json.Marshal(Apply(cur, c))
	if err != nil {
		return v1.Hash{}, err
	}
	cf, err := v1.ParseConfigFile(strings.NewReader(string(b)))
	if err != nil {
		return v1.Hash{}, err
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return v1.Hash{}, err
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("tag %q: %w", tag, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return v1.Hash{}, err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return v1.Hash{}, fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}
