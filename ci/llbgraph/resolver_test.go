package llbgraph

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/moby/buildkit/client/llb/sourceresolver"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// fakeRegistry answers image config lookups the way a gateway client does
// for the upstream profile, without a registry.
type fakeRegistry struct {
	mu   sync.Mutex
	asks []string
}

func (f *fakeRegistry) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	f.mu.Lock()
	f.asks = append(f.asks, ref)
	f.mu.Unlock()
	dt, _ := json.Marshal(ocispecs.Image{
		Platform: ocispecs.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispecs.ImageConfig{
			Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "PYTHON_VERSION=3.11.14", "LANG=C.UTF-8"},
			WorkingDir: "/base-wd",
		},
	})
	return ref, digest.FromBytes(dt), dt, nil
}

func TestUpstreamBaseConfigFromResolver(t *testing.T) {
	reg := &fakeRegistry{}
	img := spec.Backend(opts(spec.Upstream))
	in := Inputs{Profile: spec.Upstream, Resolver: reg}
	g := marshal(t, img, in)

	runtime := g.chain(g.final)
	env := envMap(g.exec(runtime[1]).Meta.Env)
	assert.Equal(t, "3.11.14", env["PYTHON_VERSION"], "the registry image's env reaches RUN")
	assert.Equal(t, "/base-wd", g.exec(runtime[1]).Meta.Cwd, "and its working directory")
	// The builder's WORKDIR overrides the base's.
	_, builderFinal := g.copy(runtime[indexOf(t, g.labels(runtime), "COPY /opt/venv")])
	builder := g.chain(builderFinal)
	i := indexOf(t, g.labels(builder), "RUN sh -c uv venv")
	assert.Equal(t, "/src", g.exec(builder[i]).Meta.Cwd)
	assert.Equal(t, "3.11.14", envMap(g.exec(builder[i]).Meta.Env)["PYTHON_VERSION"])
	// uv's image only provides a file: its config is never fetched.
	assert.NotContains(t, reg.asks, spec.UVImage)
	assert.Contains(t, reg.asks, "docker.io/library/python:3.11-slim")
	for _, d := range builder {
		if s := g.ops[d].GetSource(); s != nil {
			assert.Equal(t, "docker-image://docker.io/library/python:3.11-slim", s.Identifier)
		}
	}

	st, err := Build(img, in)
	require.NoError(t, err)
	dt, err := ImageConfig(context.Background(), img, st, in)
	require.NoError(t, err)
	var c ocispecs.Image
	require.NoError(t, json.Unmarshal(dt, &c))
	cenv := envMap(c.Config.Env)
	assert.Equal(t, "3.11.14", cenv["PYTHON_VERSION"])
	assert.Equal(t, "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", cenv["PATH"])
	assert.Equal(t, "/app", c.Config.WorkingDir)
}
