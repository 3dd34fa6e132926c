package llbgraph

import (
	"encoding/json"
	"testing"

	"github.com/moby/buildkit/solver/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// TestOpsOnASyntheticSpec: each spec operation becomes the LLB a Dockerfile's equivalent
// would, on a two-stage description small enough to state in full. Ops are found by what
// they do, never by their position in a production image.
func TestOpsOnASyntheticSpec(t *testing.T) {
	img := spec.Image{
		Name: "t",
		Stages: []spec.Stage{
			{Name: "build", Base: spec.BasePython, Ops: []spec.Op{
				spec.Workdir{Path: "/src"},
				spec.Env{KV: spec.KV{Key: "A", Value: "stage"}},
				spec.CopySrc{From: "app/", To: "/src/app", Owner: "10:20", Dir: true, Exclude: []string{"*.pyc"}},
				spec.Run{Args: []string{"make"}, Env: []spec.KV{{Key: "B", Value: "step"}}, HostCA: true, Caches: []spec.Cache{
					{ID: "c-locked", Path: "/var/cache/x", Locked: true},
					{ID: "c-shared", Path: "/root/.cache"},
				}},
				spec.Run{Args: []string{"make", "install"}},
			}},
			{Name: "run", Base: spec.BaseNginx, Ops: []spec.Op{
				spec.CopyStage{Stage: "build", From: "/src/out", To: "/out", Owner: "1:1", Dir: true},
				spec.CopyImage{Ref: "example.org/tool:1", From: "/tool", To: "/usr/local/bin/tool"},
			}},
		},
		Config: spec.Config{User: "1:1"},
	}
	g := marshal(t, img, Inputs{Profile: spec.Upstream})

	// The last stage is the result; its copy from "build" reads that stage's last state.
	run := g.chain(g.final)
	rl := g.labels(run)
	assert.Equal(t, []string{
		"FROM docker-image://docker.io/library/nginx:1.26-alpine",
		"COPY /src/out /out",
		"COPY /tool /usr/local/bin/tool",
	}, rl)
	out, fromStage := g.copy(run[indexOf(t, rl, "COPY /src/out")])
	assert.Equal(t, uint32(1), out.Owner.User.GetByID())
	build := g.chain(fromStage)
	bl := g.labels(build)
	assert.Equal(t, []string{
		"FROM docker-image://docker.io/library/python:3.11-slim",
		"MKDIR /src",
		"COPY /app /src/app",
		"RUN make",
		"RUN make install",
	}, bl)
	_, tool := g.copy(run[indexOf(t, rl, "COPY /tool")])
	assert.Equal(t, "docker-image://example.org/tool:1", g.source(tool).Identifier)

	// CopySrc: owner, excludes, and a source that sends only what is copied.
	app, appSrc := g.copy(build[indexOf(t, bl, "COPY /app")])
	assert.Equal(t, "/src/app", app.Dest)
	assert.Equal(t, []string{"*.pyc"}, app.ExcludePatterns)
	require.NotNil(t, app.Owner)
	assert.Equal(t, [2]uint32{10, 20}, [2]uint32{app.Owner.User.GetByID(), app.Owner.Group.GetByID()})
	local := g.source(appSrc)
	assert.Equal(t, "local://source", local.Identifier)
	var inc []string
	require.NoError(t, json.Unmarshal([]byte(local.Attrs[pb.AttrIncludePatterns]), &inc))
	assert.Equal(t, []string{"app"}, inc)

	// Run: the Workdir is its cwd; stage env and its own env apply; caches and the CA
	// secret are mounted for this step only, and its env does not reach the next step.
	mk := g.exec(build[indexOf(t, bl, "RUN make")])
	assert.Equal(t, "/src", mk.Meta.Cwd)
	assert.Equal(t, "stage", envMap(mk.Meta.Env)["A"])
	assert.Equal(t, "step", envMap(mk.Meta.Env)["B"])
	caches, secrets := mounts(mk)
	assert.Equal(t, map[string]string{"/var/cache/x": "c-locked LOCKED", "/root/.cache": "c-shared SHARED"}, caches)
	assert.Equal(t, map[string]string{spec.HostCAPath: DefaultHostCASecret}, secrets)

	inst := g.exec(build[indexOf(t, bl, "RUN make install")])
	assert.Equal(t, "/src", inst.Meta.Cwd)
	assert.Equal(t, "stage", envMap(inst.Meta.Env)["A"])
	assert.NotContains(t, envMap(inst.Meta.Env), "B", "a step's env is the step's only")
	caches, secrets = mounts(inst)
	assert.Empty(t, caches)
	assert.Empty(t, secrets)
}

// mounts lists an exec's cache mounts (dest -> "id SHARING") and secret mounts (dest -> id).
func mounts(e *pb.ExecOp) (caches, secrets map[string]string) {
	caches, secrets = map[string]string{}, map[string]string{}
	for _, m := range e.Mounts {
		switch m.MountType {
		case pb.MountType_CACHE:
			caches[m.Dest] = m.CacheOpt.ID + " " + m.CacheOpt.Sharing.String()
		case pb.MountType_SECRET:
			secrets[m.Dest] = m.SecretOpt.ID
		}
	}
	return caches, secrets
}
