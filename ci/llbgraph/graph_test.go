package llbgraph

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/solver/pb"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// graph is a marshaled definition indexed the way buildkit's own llb tests
// walk it: ops by digest, plus the terminal op.
type graph struct {
	t     *testing.T
	ops   map[digest.Digest]*pb.Op
	final digest.Digest
}

func marshal(t *testing.T, img spec.Image, in Inputs) *graph {
	t.Helper()
	def, err := Marshal(context.Background(), img, in)
	require.NoError(t, err)
	g := &graph{t: t, ops: map[digest.Digest]*pb.Op{}}
	var last *pb.Op
	for _, dt := range def.Def {
		var op pb.Op
		require.NoError(t, op.UnmarshalVT(dt))
		g.ops[digest.FromBytes(dt)] = &op
		last = &op
	}
	// The terminal op only points at the result.
	require.Len(t, last.Inputs, 1)
	g.final = digest.Digest(last.Inputs[0].Digest)
	return g
}

func (g *graph) input(op *pb.Op, i int64) digest.Digest {
	require.Less(g.t, int(i), len(op.Inputs), "input %d of %v", i, op)
	return digest.Digest(op.Inputs[i].Digest)
}

// parent follows the root filesystem an op modifies; "" for sources.
func (g *graph) parent(d digest.Digest) digest.Digest {
	op := g.ops[d]
	switch o := op.Op.(type) {
	case *pb.Op_Exec:
		for _, m := range o.Exec.Mounts {
			if m.Dest == "/" {
				return g.input(op, m.Input)
			}
		}
	case *pb.Op_File:
		require.Len(g.t, o.File.Actions, 1)
		return g.input(op, o.File.Actions[0].Input)
	}
	return ""
}

// chain is the stage ending at d, base first.
func (g *graph) chain(d digest.Digest) []digest.Digest {
	var out []digest.Digest
	for ; d != ""; d = g.parent(d) {
		out = append(out, d)
	}
	slices.Reverse(out)
	return out
}

func (g *graph) exec(d digest.Digest) *pb.ExecOp {
	e := g.ops[d].GetExec()
	require.NotNil(g.t, e, "op %s is not an exec", d)
	return e
}

func (g *graph) copy(d digest.Digest) (*pb.FileActionCopy, digest.Digest) {
	f := g.ops[d].GetFile()
	require.NotNil(g.t, f, "op %s is not a file op", d)
	a := f.Actions[0]
	c := a.GetCopy()
	require.NotNil(g.t, c, "op %s is not a copy", d)
	return c, g.input(g.ops[d], a.SecondaryInput)
}

func (g *graph) source(d digest.Digest) *pb.SourceOp {
	s := g.ops[d].GetSource()
	require.NotNil(g.t, s, "op %s is not a source", d)
	return s
}

// byKind returns the non-source ops of a stage chain in order, as short
// labels for ordering assertions.
func (g *graph) labels(ch []digest.Digest) []string {
	var out []string
	for _, d := range ch {
		switch o := g.ops[d].Op.(type) {
		case *pb.Op_Exec:
			out = append(out, "RUN "+strings.Join(o.Exec.Meta.Args, " "))
		case *pb.Op_File:
			a := o.File.Actions[0]
			switch x := a.Action.(type) {
			case *pb.FileAction_Copy:
				out = append(out, "COPY "+x.Copy.Src+" "+x.Copy.Dest)
			case *pb.FileAction_Mkdir:
				out = append(out, "MKDIR "+x.Mkdir.Path)
			}
		case *pb.Op_Source:
			out = append(out, "FROM "+o.Source.Identifier)
		}
	}
	return out
}

func indexOf(t *testing.T, labels []string, prefix string) int {
	t.Helper()
	for i, l := range labels {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	t.Fatalf("no step starting with %q in %q", prefix, labels)
	return -1
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		m[k] = v
	}
	return m
}

// writeLayout makes a minimal OCI layout like make-base-images.sh does:
// index.json -> manifest -> config, annotated with the base's name.
func writeLayout(t *testing.T, dir, name string, env []string) digest.Digest {
	t.Helper()
	return writeLayoutConfig(t, dir, name, ocispecs.Image{
		Platform: ocispecs.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispecs.ImageConfig{Env: env},
		RootFS:   ocispecs.RootFS{Type: "layers"},
	})
}

// writeLayoutConfig is writeLayout with the whole image config given.
func writeLayoutConfig(t *testing.T, dir, name string, config ocispecs.Image) digest.Digest {
	t.Helper()
	root := filepath.Join(dir, name)
	blobs := filepath.Join(root, "blobs", "sha256")
	require.NoError(t, os.MkdirAll(blobs, 0o755))
	put := func(v any) ocispecs.Descriptor {
		dt, err := json.Marshal(v)
		require.NoError(t, err)
		d := digest.FromBytes(dt)
		require.NoError(t, os.WriteFile(filepath.Join(blobs, d.Encoded()), dt, 0o644))
		return ocispecs.Descriptor{Digest: d, Size: int64(len(dt))}
	}
	cfg := put(config)
	cfg.MediaType = ocispecs.MediaTypeImageConfig
	man := put(ocispecs.Manifest{MediaType: ocispecs.MediaTypeImageManifest, Config: cfg})
	man.MediaType = ocispecs.MediaTypeImageManifest
	man.Annotations = map[string]string{RefName: name}
	idx, err := json.Marshal(ocispecs.Index{MediaType: ocispecs.MediaTypeImageIndex, Manifests: []ocispecs.Descriptor{man}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(root, "index.json"), idx, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644))
	return man.Digest
}

const basePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func offlineInputs(t *testing.T, img spec.Image) (Inputs, map[spec.BaseKind]digest.Digest) {
	t.Helper()
	dir := t.TempDir()
	digests := map[spec.BaseKind]digest.Digest{}
	for _, k := range spec.BaseKinds {
		digests[k] = writeLayout(t, dir, string(k), []string{"PATH=" + basePath, "BASE_KIND=" + string(k)})
	}
	layouts, err := ReadLayouts(dir, img, DefaultPlatform)
	require.NoError(t, err)
	return Inputs{Profile: spec.Offline, Layouts: layouts}, digests
}

func opts(p spec.Profile) spec.Options {
	return spec.Options{Profile: p, Revision: "abc123", Created: "2026-11-25T10:00:00Z"}
}

func TestBackendOffline(t *testing.T) {
	img := spec.Backend(opts(spec.Offline))
	in, digests := offlineInputs(t, img)
	g := marshal(t, img, in)

	runtime := g.chain(g.final)
	rl := g.labels(runtime)
	// Both stages start from the python layout, pinned by digest and read
	// from the "python" content store.
	src := g.source(runtime[0])
	assert.Equal(t, "oci-layout://docker.io/kidney-base/python@"+digests[spec.BasePython].String(), src.Identifier)
	assert.Equal(t, "python", src.Attrs[pb.AttrOCILayoutStoreID])

	assert.Equal(t, []string{
		"FROM oci-layout://docker.io/kidney-base/python@" + digests[spec.BasePython].String(),
		"RUN sh -c apt-get update && apt-get install -y --no-install-recommends curl",
		"RUN sh -c groupadd -r -g 1000 kidney-api && useradd -r -u 1000 -g kidney-api -m -s /bin/bash kidney-api",
		"COPY /opt/venv /opt/venv",
		"COPY /backend/app /app/app",
	}, rl)

	// The runtime's apt step keeps apt's lists and caches in the same
	// locked cache mounts as the builder, so none of it lands in the layer.
	apt := g.exec(runtime[indexOf(t, rl, "RUN sh -c apt-get")])
	rc := map[string]string{}
	for _, m := range apt.Mounts {
		assert.NotEqual(t, pb.MountType_SECRET, m.MountType)
		if m.MountType == pb.MountType_CACHE {
			assert.Equal(t, pb.CacheSharingOpt_LOCKED, m.CacheOpt.Sharing)
			rc[m.Dest] = m.CacheOpt.ID
		}
	}
	assert.Equal(t, map[string]string{"/var/cache/apt": "kidney-apt-cache", "/var/lib/apt/lists": "kidney-apt-lists"}, rc)
	// Base env reaches every RUN (FROM inheritance).
	assert.Equal(t, basePath, envMap(apt.Meta.Env)["PATH"])
	assert.Equal(t, "python", envMap(apt.Meta.Env)["BASE_KIND"])

	venv, builderFinal := g.copy(runtime[indexOf(t, g.labels(runtime), "COPY /opt/venv")])
	assert.Equal(t, "/opt/venv", venv.Dest)
	assert.Nil(t, venv.Owner)
	// The Debian-made base has no pip to remove; a pip step would fail there.
	for _, l := range g.labels(runtime) {
		assert.NotContains(t, l, "pip uninstall")
	}

	app, appSrc := g.copy(runtime[indexOf(t, rl, "COPY /backend/app")])
	assert.True(t, app.DirCopyContents)
	assert.True(t, app.CreateDestPath)
	assert.Equal(t, []string{"**/__pycache__", "**/*.pyc"}, app.ExcludePatterns)
	require.NotNil(t, app.Owner)
	assert.Equal(t, uint32(1000), app.Owner.User.GetByID())
	assert.Equal(t, uint32(1000), app.Owner.Group.GetByID())
	local := g.source(appSrc)
	assert.Equal(t, "local://source", local.Identifier)
	var inc []string
	require.NoError(t, json.Unmarshal([]byte(local.Attrs[pb.AttrIncludePatterns]), &inc))
	assert.Equal(t, []string{"backend/app", "backend/pyproject.toml", "scripts/check-requirements.py", "scripts/offline-venv.sh"}, inc)

	builder := g.chain(builderFinal)
	bl := g.labels(builder)
	assert.Equal(t, []string{
		"FROM oci-layout://docker.io/kidney-base/python@" + digests[spec.BasePython].String(),
		"MKDIR /src",
		"COPY /backend/pyproject.toml /src/pyproject.toml",
		"COPY /scripts/check-requirements.py /usr/local/bin/check-requirements.py",
		"COPY /scripts/offline-venv.sh /usr/local/bin/offline-venv.sh",
		"RUN sh /usr/local/bin/offline-venv.sh /opt/venv /src/pyproject.toml",
		"RUN /opt/venv/bin/python /usr/local/bin/check-requirements.py /src/pyproject.toml",
	}, bl)
	install := g.exec(builder[indexOf(t, bl, "RUN sh /usr/local/bin/offline-venv.sh")])
	assert.Equal(t, "/src", install.Meta.Cwd)
	assert.Equal(t, basePath, envMap(install.Meta.Env)["PATH"])
	caches := map[string]*pb.Mount{}
	for _, m := range install.Mounts {
		if m.MountType == pb.MountType_CACHE {
			caches[m.Dest] = m
		}
		assert.NotEqual(t, pb.MountType_SECRET, m.MountType, "no secret in the backend build")
	}
	require.Len(t, caches, 2)
	assert.Equal(t, "kidney-apt-cache", caches["/var/cache/apt"].CacheOpt.ID)
	assert.Equal(t, pb.CacheSharingOpt_LOCKED, caches["/var/cache/apt"].CacheOpt.Sharing)
	assert.Equal(t, "kidney-apt-lists", caches["/var/lib/apt/lists"].CacheOpt.ID)
	assert.Equal(t, pb.CacheSharingOpt_LOCKED, caches["/var/lib/apt/lists"].CacheOpt.Sharing)

	assertNoTests(t, g)
}

// assertNoTests: backend/tests never enters any image, not even a builder.
func assertNoTests(t *testing.T, g *graph) {
	t.Helper()
	for _, op := range g.ops {
		if c := op.GetFile(); c != nil {
			for _, a := range c.Actions {
				if cp := a.GetCopy(); cp != nil {
					assert.NotContains(t, cp.Src, "tests", "copy %s -> %s", cp.Src, cp.Dest)
				}
			}
		}
		if s := op.GetSource(); s != nil && strings.HasPrefix(s.Identifier, "local://") {
			assert.NotContains(t, s.Attrs[pb.AttrIncludePatterns], "backend/tests")
			assert.NotEqual(t, "", s.Attrs[pb.AttrIncludePatterns], "the whole repository must not be sent")
		}
	}
}

func TestBackendUpstream(t *testing.T) {
	img := spec.Backend(opts(spec.Upstream))
	g := marshal(t, img, Inputs{Profile: spec.Upstream})
	runtime := g.chain(g.final)
	assert.Equal(t, "docker-image://docker.io/library/python:3.11-slim", g.source(runtime[0]).Identifier)
	rl := g.labels(runtime)
	_, builderFinal := g.copy(runtime[indexOf(t, rl, "COPY /opt/venv")])
	builder := g.chain(builderFinal)
	bl := g.labels(builder)
	// python:3.11-slim's pip/setuptools/wheel leave the runtime before
	// anything else is added to it.
	assert.Equal(t, "RUN python3 -m pip uninstall -y pip setuptools wheel", rl[indexOf(t, rl, "RUN python3 -m pip")])
	assert.Less(t, indexOf(t, rl, "RUN python3 -m pip"), indexOf(t, rl, "COPY /opt/venv"))
	assert.Equal(t, "FROM docker-image://docker.io/library/python:3.11-slim", bl[0])

	uv, uvSrc := g.copy(builder[indexOf(t, bl, "COPY /uv ")])
	assert.Equal(t, "/usr/local/bin/uv", uv.Dest)
	assert.Equal(t, "docker-image://ghcr.io/astral-sh/uv:0.9.9", g.source(uvSrc).Identifier)

	i := indexOf(t, bl, "RUN sh -c uv venv")
	install := g.exec(builder[i])
	env := envMap(install.Meta.Env)
	assert.Equal(t, "copy", env["UV_LINK_MODE"])
	assert.Equal(t, "never", env["UV_PYTHON_DOWNLOADS"])
	var cache *pb.Mount
	for _, m := range install.Mounts {
		if m.MountType == pb.MountType_CACHE {
			cache = m
		}
	}
	require.NotNil(t, cache)
	assert.Equal(t, "kidney-uv-cache", cache.CacheOpt.ID)
	assert.Equal(t, "/root/.cache/uv", cache.Dest)
	assert.Equal(t, pb.CacheSharingOpt_SHARED, cache.CacheOpt.Sharing)
	// Dependency metadata is in before the install; app code never is.
	assert.Less(t, indexOf(t, bl, "COPY /backend/pyproject.toml"), i)
	assert.Greater(t, indexOf(t, bl, "RUN /opt/venv/bin/python /usr/local/bin/check-requirements.py"), i)
	assertNoTests(t, g)
}

func TestFrontend(t *testing.T) {
	for _, p := range []spec.Profile{spec.Offline, spec.Upstream} {
		t.Run(string(p), func(t *testing.T) {
			img := spec.Frontend(opts(p))
			in := Inputs{Profile: p}
			var digests map[spec.BaseKind]digest.Digest
			if p == spec.Offline {
				in, digests = offlineInputs(t, img)
			}
			g := marshal(t, img, in)
			runtime := g.chain(g.final)
			rl := g.labels(runtime)
			dist, builderFinal := g.copy(runtime[indexOf(t, rl, "COPY /src/dist")])
			assert.Equal(t, "/src/dist", dist.Src)
			assert.Equal(t, "/usr/share/nginx/html", dist.Dest)
			assert.True(t, dist.DirCopyContents, "dist/ contents go into html/, as COPY does")
			assert.Contains(t, rl, "COPY /nginx/nginx.prod.conf /etc/nginx/nginx.conf")
			assert.Contains(t, rl, "COPY /scripts/docker-entrypoint.sh /usr/local/bin/kidney-entrypoint.sh")
			// env-config.js is made writable for nginx's user after the app's files are in.
			chown := slices.IndexFunc(rl, func(l string) bool {
				return strings.HasPrefix(l, "RUN ") && strings.Contains(l, "chown 101:101 /usr/share/nginx/html/env-config.js")
			})
			assert.Greater(t, chown, indexOf(t, rl, "COPY /src/dist"))

			builder := g.chain(builderFinal)
			bl := g.labels(builder)
			if p == spec.Offline {
				assert.Equal(t, "FROM oci-layout://docker.io/kidney-base/nginx@"+digests[spec.BaseNginx].String(), rl[0])
				assert.Equal(t, "FROM oci-layout://docker.io/kidney-base/node@"+digests[spec.BaseNode].String(), bl[0])
			} else {
				assert.Equal(t, "FROM docker-image://docker.io/library/nginx:1.26-alpine", rl[0])
				assert.Equal(t, "FROM docker-image://docker.io/library/node:20-alpine", bl[0])
			}
			npm := indexOf(t, bl, "RUN npm ci")
			srcCopy := indexOf(t, bl, "COPY /frontend /src")
			assert.Less(t, indexOf(t, bl, "COPY /frontend/package-lock.json"), npm)
			assert.Less(t, npm, srcCopy, "npm ci must not depend on source edits")
			assert.Less(t, srcCopy, indexOf(t, bl, "RUN npm run build"))

			cp, _ := g.copy(builder[srcCopy])
			assert.Equal(t, []string{"node_modules", "dist", "e2e", "tests", "**/*.test.js"}, cp.ExcludePatterns)

			// The CA secret: on npm ci only, and only offline.
			secrets := map[string]*pb.Mount{}
			for d, op := range g.ops {
				if e := op.GetExec(); e != nil {
					for _, m := range e.Mounts {
						if m.MountType == pb.MountType_SECRET {
							secrets[strings.Join(g.exec(d).Meta.Args, " ")] = m
						}
					}
				}
			}
			npmExec := g.exec(builder[npm])
			if p == spec.Offline {
				require.Len(t, secrets, 1)
				m := secrets["npm ci --no-audit --no-fund"]
				require.NotNil(t, m)
				assert.Equal(t, spec.HostCAPath, m.Dest)
				assert.Equal(t, "host-ca", m.SecretOpt.ID)
				assert.Equal(t, spec.HostCAPath, envMap(npmExec.Meta.Env)["NODE_EXTRA_CA_CERTS"])
				// The step env is not leaked to later steps.
				_, leaked := envMap(g.exec(builder[indexOf(t, bl, "RUN npm run build")]).Meta.Env)["NODE_EXTRA_CA_CERTS"]
				assert.False(t, leaked)
			} else {
				assert.Empty(t, secrets)
			}
			assert.Equal(t, "/src", npmExec.Meta.Cwd)
			var npmCache bool
			for _, m := range npmExec.Mounts {
				if m.MountType == pb.MountType_CACHE && m.Dest == "/root/.npm" {
					npmCache = m.CacheOpt.ID == "kidney-npm-cache" && m.CacheOpt.Sharing == pb.CacheSharingOpt_SHARED
				}
			}
			assert.True(t, npmCache, "npm cache mount")

			inc, exc := SourcePatterns(img)
			assert.Equal(t, []string{"frontend", "frontend/package-lock.json", "frontend/package.json", "nginx/nginx.prod.conf", "scripts/docker-entrypoint.sh"}, inc)
			assert.Contains(t, exc, "frontend/node_modules")
			assert.Contains(t, exc, "frontend/**/*.test.js")
			assertNoBackend(t, g)
		})
	}
}

// A backend edit must not touch the frontend build's inputs.
func assertNoBackend(t *testing.T, g *graph) {
	for _, op := range g.ops {
		if s := op.GetSource(); s != nil && strings.HasPrefix(s.Identifier, "local://") {
			assert.NotContains(t, s.Attrs[pb.AttrIncludePatterns], "backend")
		}
	}
}

func TestImageConfig(t *testing.T) {
	img := spec.Backend(opts(spec.Offline))
	in, _ := offlineInputs(t, img)
	st, err := Build(img, in)
	require.NoError(t, err)
	dt, err := ImageConfig(context.Background(), img, st, in)
	require.NoError(t, err)

	var c struct {
		Architecture string
		OS           string
		Created      string
		Config       struct {
			User         string
			Env          []string
			Cmd          []string
			WorkingDir   string
			ExposedPorts map[string]struct{}
			Labels       map[string]string
			Healthcheck  struct {
				Test                           []string
				Interval, Timeout, StartPeriod int64
				Retries                        int
			}
		}
	}
	require.NoError(t, json.Unmarshal(dt, &c))
	assert.Equal(t, "amd64", c.Architecture)
	assert.Equal(t, "linux", c.OS)
	assert.Equal(t, "2026-11-25T10:00:00Z", c.Created)
	assert.Equal(t, "1000:1000", c.Config.User)
	assert.Equal(t, "/app", c.Config.WorkingDir)
	assert.Equal(t, []string{"python", "-m", "uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"}, c.Config.Cmd)
	assert.Equal(t, map[string]struct{}{"8000/tcp": {}}, c.Config.ExposedPorts)
	env := envMap(c.Config.Env)
	assert.Equal(t, "/opt/venv/bin:"+basePath, env["PATH"], "spec env overrides the base's PATH")
	assert.Equal(t, "python", env["BASE_KIND"], "base env is inherited")
	assert.Equal(t, "1", env["PYTHONUNBUFFERED"])
	assert.Equal(t, "offline", c.Config.Labels["org.kidney-genetics.profile"])
	assert.Equal(t, "abc123", c.Config.Labels["org.opencontainers.image.revision"])
	assert.Equal(t, int64(30e9), c.Config.Healthcheck.Interval)
	assert.Equal(t, int64(10e9), c.Config.Healthcheck.Timeout)
	assert.Equal(t, int64(40e9), c.Config.Healthcheck.StartPeriod)
	assert.Equal(t, 3, c.Config.Healthcheck.Retries)
	assert.Equal(t, "CMD", c.Config.Healthcheck.Test[0])
	// Docker's field names are capitalised, not OCI's lower case.
	assert.Contains(t, string(dt), `"Healthcheck":{"Test":["CMD","curl"`)

	fimg := spec.Frontend(opts(spec.Upstream))
	fst, err := Build(fimg, Inputs{Profile: spec.Upstream})
	require.NoError(t, err)
	dt, err = ImageConfig(context.Background(), fimg, fst, Inputs{Profile: spec.Upstream})
	require.NoError(t, err)
	var f map[string]any
	require.NoError(t, json.Unmarshal(dt, &f))
	cfg := f["config"].(map[string]any)
	assert.Equal(t, "SIGQUIT", cfg["StopSignal"])
	assert.Equal(t, []any{"/usr/local/bin/kidney-entrypoint.sh"}, cfg["Entrypoint"])
	assert.Equal(t, "101:101", cfg["User"])
	assert.NotContains(t, cfg, "WorkingDir")
}

func TestValidateFailure(t *testing.T) {
	one := func(op spec.Op) spec.Image {
		return spec.Image{Name: "t", Config: spec.Config{User: "1:1"}, Stages: []spec.Stage{{Name: "s", Base: spec.BasePython, Ops: []spec.Op{op}}}}
	}
	_, err := Build(one(spec.CopyStage{Stage: "nosuch", From: "/x", To: "/x"}), Inputs{Profile: spec.Upstream})
	assert.ErrorContains(t, err, `copies from stage "nosuch", which is not an earlier stage`)
	_, err = Build(one(spec.CopySrc{From: "x", To: "/x", Owner: "kidney"}), Inputs{Profile: spec.Upstream})
	assert.ErrorContains(t, err, `owner "kidney": want "uid:gid"`)
	_, err = Build(one(spec.CopySrc{From: "x", To: "/x", Owner: "1:1"}), Inputs{Profile: spec.Upstream})
	assert.NoError(t, err)
}

func TestMissingLayout(t *testing.T) {
	dir := t.TempDir()
	img := spec.Backend(opts(spec.Offline))
	_, err := ReadLayouts(dir, img, DefaultPlatform)
	require.ErrorIs(t, err, ErrMissingLayout)
	assert.Contains(t, err.Error(), filepath.Join(dir, "python", "index.json"))
	assert.Contains(t, err.Error(), "run scripts/make-base-images.sh")

	// Layouts not read at all: Build says which base and what to run.
	_, err = Build(img, Inputs{Profile: spec.Offline})
	require.ErrorIs(t, err, ErrMissingLayout)
	assert.Contains(t, err.Error(), `base "python"`)
}

func TestLayoutNestedIndexAndCorruption(t *testing.T) {
	dir := t.TempDir()
	d := writeLayout(t, dir, "node", []string{"PATH=/x"})
	root := filepath.Join(dir, "node")
	// Wrap the manifest in a multi-platform index, as `docker save`-style
	// tools do, and check the amd64 entry is chosen.
	man := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageManifest, Digest: d, Platform: &ocispecs.Platform{OS: "linux", Architecture: "amd64"}}
	other := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageManifest, Digest: digest.FromString("nope"), Platform: &ocispecs.Platform{OS: "linux", Architecture: "arm64"}}
	inner, _ := json.Marshal(ocispecs.Index{MediaType: ocispecs.MediaTypeImageIndex, Manifests: []ocispecs.Descriptor{other, man}})
	id := digest.FromBytes(inner)
	require.NoError(t, os.WriteFile(filepath.Join(root, "blobs", "sha256", id.Encoded()), inner, 0o644))
	outer, _ := json.Marshal(ocispecs.Index{Manifests: []ocispecs.Descriptor{{MediaType: ocispecs.MediaTypeImageIndex, Digest: id, Annotations: map[string]string{RefName: "node"}}}})
	require.NoError(t, os.WriteFile(filepath.Join(root, "index.json"), outer, 0o644))

	l, err := ReadLayout(dir, spec.BaseNode, "node", DefaultPlatform)
	require.NoError(t, err)
	assert.Equal(t, id, l.Digest, "the graph pins what index.json names")
	assert.Contains(t, string(l.Config), `"PATH=/x"`)

	_, err = ReadLayout(dir, spec.BaseNode, "node", ocispecs.Platform{OS: "linux", Architecture: "riscv64"})
	assert.ErrorContains(t, err, "no image for linux/riscv64")

	require.NoError(t, os.WriteFile(filepath.Join(root, "blobs", "sha256", id.Encoded()), []byte("{}"), 0o644))
	_, err = ReadLayout(dir, spec.BaseNode, "node", DefaultPlatform)
	assert.ErrorContains(t, err, "is corrupt")
}

// The same description marshals to the same bytes: graph digests can be
// compared across runs and recorded.
func TestDeterministic(t *testing.T) {
	img := spec.Frontend(opts(spec.Offline))
	in, _ := offlineInputs(t, img)
	a, err := Marshal(context.Background(), img, in)
	require.NoError(t, err)
	b, err := Marshal(context.Background(), img, in)
	require.NoError(t, err)
	assert.Equal(t, DefinitionDigest(a), DefinitionDigest(b))

	// And the graph really depends on the base digest.
	in.Layouts[spec.BaseNginx] = Layout{Kind: spec.BaseNginx, StoreID: "nginx", Digest: digest.FromString("other"), Config: []byte(`{}`)}
	c, err := Marshal(context.Background(), img, in)
	require.NoError(t, err)
	assert.NotEqual(t, DefinitionDigest(a), DefinitionDigest(c))
}
