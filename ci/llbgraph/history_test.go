package llbgraph

import (
	"context"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// TestHistory: the history accounts for every layer of the image (the base's, then one
// per op of the final stage), names each layer like its build step and dates it with the
// image's creation time, so that BuildKit's exporter adds nothing of its own.
func TestHistory(t *testing.T) {
	ctx := context.Background()
	img := spec.Backend(opts(spec.Offline))
	in, _ := offlineInputs(t, img)
	h, err := History(ctx, img, in)
	require.NoError(t, err)

	final := img.Stages[len(img.Stages)-1]
	require.Len(t, h, len(final.Ops), "the test base has no layers: one entry per op")
	created := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	def, err := Marshal(ctx, img, in)
	require.NoError(t, err)
	steps := map[string]bool{}
	for _, m := range def.Metadata {
		steps[m.Description["llb.customname"]] = true
	}
	for i, e := range h {
		assert.True(t, steps[e.CreatedBy], "history entry %q is not a step of the build", e.CreatedBy)
		require.NotNil(t, e.Created)
		assert.True(t, created.Equal(*e.Created), e.CreatedBy)
		assert.False(t, e.EmptyLayer, e.CreatedBy)
		assert.Empty(t, e.Comment)
		assert.Contains(t, e.CreatedBy, "[backend runtime ", i)
	}
	assert.Equal(t, "[backend runtime 4/4] COPY backend/app /app/app", h[len(h)-1].CreatedBy)

	// An Env op makes no layer.
	withEnv := img
	withEnv.Stages = append([]spec.Stage(nil), img.Stages...)
	last := &withEnv.Stages[len(withEnv.Stages)-1]
	last.Ops = append(append([]spec.Op(nil), last.Ops...), spec.Env{KV: spec.KV{Key: "A", Value: "b"}})
	h, err = History(ctx, withEnv, in)
	require.NoError(t, err)
	assert.True(t, h[len(h)-1].EmptyLayer)
	assert.Equal(t, "[backend runtime 5/5] ENV A=b", h[len(h)-1].CreatedBy)

	layers := []digest.Digest{digest.FromString("l1"), digest.FromString("l2")}
	baseCreated := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	base := func(hist []ocispecs.History) Inputs {
		dir := t.TempDir()
		for _, k := range spec.BaseKinds {
			writeLayoutConfig(t, dir, string(k), ocispecs.Image{
				Created:  &baseCreated,
				Platform: ocispecs.Platform{OS: "linux", Architecture: "amd64"},
				RootFS:   ocispecs.RootFS{Type: "layers", DiffIDs: layers},
				History:  hist,
			})
		}
		layouts, err := ReadLayouts(dir, img, DefaultPlatform)
		require.NoError(t, err)
		return Inputs{Profile: spec.Offline, Layouts: layouts}
	}
	// A base whose history accounts for its layers keeps it.
	own := []ocispecs.History{{CreatedBy: "debootstrap"}, {CreatedBy: "ENV X=1", EmptyLayer: true}, {CreatedBy: "apt-get install"}}
	h, err = History(ctx, img, base(own))
	require.NoError(t, err)
	require.Len(t, h, 3+len(final.Ops))
	assert.Equal(t, []string{"debootstrap", "ENV X=1", "apt-get install"}, []string{h[0].CreatedBy, h[1].CreatedBy, h[2].CreatedBy})
	assert.True(t, h[1].EmptyLayer)
	assert.True(t, baseCreated.Equal(*h[0].Created), "a base entry without a time gets the base's")
	// One without (ours, made from Debian packages) gets one FROM entry per layer.
	h, err = History(ctx, img, base(nil))
	require.NoError(t, err)
	require.Len(t, h, 2+len(final.Ops))
	assert.Contains(t, h[0].CreatedBy, "FROM oci-layout python@sha256:")
	assert.Equal(t, h[0].CreatedBy, h[1].CreatedBy)
	assert.True(t, created.Equal(*h[2].Created))

	// Upstream: the base's layers are counted from the registry's config; without a
	// resolver they cannot be, and the exporter keeps its own history.
	up := spec.Backend(opts(spec.Upstream))
	h, err = History(ctx, up, Inputs{Profile: spec.Upstream})
	require.NoError(t, err)
	assert.Nil(t, h)
	reg := &fakeRegistry{}
	h, err = History(ctx, up, Inputs{Profile: spec.Upstream, Resolver: reg})
	require.NoError(t, err)
	assert.Len(t, h, len(up.Stages[len(up.Stages)-1].Ops))
	assert.Contains(t, reg.asks, "docker.io/library/python:3.11-slim")
}
