// Package gomodules_test pins how the repository's two Go modules relate: the root
// module (kgci and the Dagger module, whose go line the pinned Dagger engine must
// accept) and ci/supplychain (syft, grype and the buildkitd CI runs, which need a
// newer Go). A module both require is required at the same version, so that a fresh
// machine compiles the packages they share once (scripts/lib/goflags.sh): a bump in
// one go.mod that the other does not follow fails here and says what to run.
package gomodules_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// heldBack are the modules the root may require at an older version than
// ci/supplychain, and why.
var heldBack = map[string]string{
	"github.com/moby/buildkit":            "v0.34 declares go 1.26.8; the root keeps the v0.30 client library (docs/dagger.md, Go version)",
	"github.com/containerd/containerd/v2": "comes with buildkit v0.30; v2.4 declares go 1.26.6",
}

// engineGo is the Go each engine version builds modules with (its Go SDK image,
// golang:1.26-alpine for v0.20.0, engine/distconsts).
var engineGo = map[string]string{"v0.20.0": "1.26.0"}

func read(t *testing.T, rel string) (string, []byte) {
	t.Helper()
	p := filepath.Join("..", "..", rel)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return p, b
}

func parse(t *testing.T, rel string) *modfile.File {
	t.Helper()
	p, b := read(t, rel)
	f, err := modfile.Parse(p, b, nil)
	require.NoError(t, err)
	return f
}

func TestSharedModulesHaveOneVersion(t *testing.T) {
	root, sc := parse(t, "go.mod"), parse(t, "ci/supplychain/go.mod")
	want := map[string]string{}
	for _, r := range sc.Require {
		want[r.Mod.Path] = r.Mod.Version
	}
	shared := 0
	for _, r := range root.Require {
		v, ok := want[r.Mod.Path]
		if !ok {
			continue
		}
		shared++
		if why, held := heldBack[r.Mod.Path]; held {
			assert.True(t, semver.Compare(r.Mod.Version, v) <= 0, "%s: the root's %s is held back (%s), so it may not be newer than ci/supplychain's %s", r.Mod.Path, r.Mod.Version, why, v)
			continue
		}
		assert.Equal(t, v, r.Mod.Version, "%s: go.mod has %s, ci/supplychain/go.mod %s; run `go get %s@<the newer>` in the other module (and go mod tidy), or list it in heldBack with the reason", r.Mod.Path, r.Mod.Version, v, r.Mod.Path)
	}
	assert.Greater(t, shared, 50, "the modules share grpc, otel, protobuf, golang.org/x/...: a parse that finds few shared requirements read the wrong files")
}

func TestRootGoLineLoadsOnThePinnedEngine(t *testing.T) {
	_, b := read(t, "dagger.json")
	var dj struct {
		EngineVersion string `json:"engineVersion"`
	}
	require.NoError(t, json.Unmarshal(b, &dj))
	goVersion, ok := engineGo[dj.EngineVersion]
	require.True(t, ok, "dagger.json pins engine %s: add the Go its Go SDK image has (engine/distconsts in dagger/dagger) to engineGo", dj.EngineVersion)
	root := parse(t, "go.mod")
	require.NotNil(t, root.Go)
	assert.True(t, semver.Compare("v"+root.Go.Version, "v"+goVersion) <= 0,
		"go.mod says go %s; Dagger %s builds modules with Go %s and refuses a newer go line (`go list -m -f '{{.Path}} {{.GoVersion}}' all` shows which dependency raised it)", root.Go.Version, dj.EngineVersion, goVersion)
}
