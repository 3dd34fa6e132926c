package imageconfig

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

var cfg = spec.Config{
	User:         "1000:1000",
	Env:          []spec.KV{{Key: "PATH", Value: "/opt/venv/bin:/usr/bin"}, {Key: "LANG", Value: "C.UTF-8"}},
	Cmd:          []string{"python", "-m", "app"},
	WorkingDir:   "/app",
	ExposedPorts: []string{"8000/tcp", "9000"},
	StopSignal:   "SIGQUIT",
	Healthcheck:  &spec.Healthcheck{Test: []string{"CMD", "curl", "-f", "http://127.0.0.1:8000/"}, Interval: 30, Timeout: 10, StartPeriod: 40, Retries: 3},
	Labels:       map[string]string{"org.opencontainers.image.created": "2026-11-25T10:00:00+01:00", "a": "b"},
}

// What the base image brought is dropped, except its environment, which later
// stages inherit (and spec.Config.Env overrides, moving the key last as BuildKit does).
func TestApply(t *testing.T) {
	var base dockerspec.DockerOCIImage
	base.Platform = ocispecs.Platform{OS: "linux", Architecture: "amd64"}
	base.RootFS = ocispecs.RootFS{Type: "layers", DiffIDs: nil}
	base.History = []ocispecs.History{{CreatedBy: "base"}}
	base.Config.Env = []string{"PATH=/usr/bin", "GPG_KEY=x", "PYTHON_VERSION=3.11"}
	base.Config.Entrypoint = []string{"/docker-entrypoint.sh"}
	base.Config.Cmd = []string{"python3"}
	base.Config.Labels = map[string]string{"maintainer": "someone"}
	base.Config.ExposedPorts = map[string]struct{}{"80/tcp": {}}
	base.Config.Volumes = map[string]struct{}{"/data": {}}
	base.Config.OnBuild = []string{"RUN x"}

	got := Apply(base, cfg)
	if want := []string{"GPG_KEY=x", "PYTHON_VERSION=3.11", "PATH=/opt/venv/bin:/usr/bin", "LANG=C.UTF-8"}; !reflect.DeepEqual(got.Config.Env, want) {
		t.Errorf("env = %q, want %q", got.Config.Env, want)
	}
	if got.Config.Entrypoint != nil || !reflect.DeepEqual(got.Config.Cmd, cfg.Cmd) {
		t.Errorf("entrypoint %q cmd %q: the base's entrypoint must not survive", got.Config.Entrypoint, got.Config.Cmd)
	}
	if got.Config.Volumes != nil || got.Config.OnBuild != nil || got.Config.Labels["maintainer"] != "" {
		t.Errorf("base volumes/onbuild/labels survived: %+v", got.Config)
	}
	if _, ok := got.Config.ExposedPorts["9000/tcp"]; !ok || len(got.Config.ExposedPorts) != 2 {
		t.Errorf("ports = %v", got.Config.ExposedPorts)
	}
	h := got.Config.Healthcheck
	if h == nil || h.Interval != 30*time.Second || h.StartPeriod != 40*time.Second || h.Retries != 3 || h.Test[1] != "curl" {
		t.Errorf("healthcheck = %+v", h)
	}
	if got.Config.User != "1000:1000" || got.Config.StopSignal != "SIGQUIT" || got.Config.WorkingDir != "/app" {
		t.Errorf("user/stop signal/workdir = %q %q %q", got.Config.User, got.Config.StopSignal, got.Config.WorkingDir)
	}
	if got.Created == nil || !got.Created.Equal(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("created = %v, want the label's time", got.Created)
	}
	if got.Platform.Architecture != "amd64" || len(got.History) != 1 {
		t.Errorf("platform/history not kept: %+v %+v", got.Platform, got.History)
	}
}

// Rewrite changes the config and nothing else: the same layer blobs, a new config.
func TestRewrite(t *testing.T) {
	dir := t.TempDir()
	img, err := random.Image(1024, 3)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.Env = []string{"PATH=/usr/bin", "FROM_BASE=1"}
	cf.Config.Entrypoint = []string{"/base-entrypoint"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	in, out := filepath.Join(dir, "in.tar"), filepath.Join(dir, "out.tar")
	if err := tarball.WriteToFile(in, name.MustParseReference("dagger:export"), img); err != nil {
		t.Fatal(err)
	}
	d, err := Rewrite(in, out, "kidney_genetics_backend:latest", cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if gd, _ := got.Digest(); gd != d {
		t.Errorf("returned digest %s, file has %s", d, gd)
	}
	layers := func(i v1.Image) []v1.Hash {
		ls, _ := i.Layers()
		var out []v1.Hash
		for _, l := range ls {
			h, _ := l.Digest()
			out = append(out, h)
		}
		return out
	}
	if !reflect.DeepEqual(layers(img), layers(got)) {
		t.Errorf("layers changed: %v -> %v", layers(img), layers(got))
	}
	raw, _ := got.RawConfigFile()
	var c dockerspec.DockerOCIImage
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if c.Config.Healthcheck == nil || c.Config.StopSignal != "SIGQUIT" || c.Config.User != "1000:1000" || c.Config.Entrypoint != nil {
		t.Errorf("config not applied: %+v", c.Config)
	}
	if c.Config.Env[0] != "FROM_BASE=1" {
		t.Errorf("inherited env lost: %q", c.Config.Env)
	}
	if _, err := Rewrite(filepath.Join(dir, "missing.tar"), out, "x:y", cfg); err == nil {
		t.Errorf("a missing input was accepted")
	}
}
