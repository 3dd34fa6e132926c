package daggertest_test

import (
	"context"
	"strings"
	"testing"

	"dagger.io/dagger"

	"github.com/kidney-genetics/kidney-genetics-db/ci/daggerbuild"
	"github.com/kidney-genetics/kidney-genetics-db/ci/daggertest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

func opts(p spec.Profile) spec.Options {
	return spec.Options{Profile: p, Revision: "0123456789abcdef0123456789abcdef01234567", Created: "2026-11-25T00:00:00Z"}
}

func inputs(c *dagger.Client) daggerbuild.Inputs {
	return daggerbuild.Inputs{
		Source: c.LoadDirectoryFromID("source-dir"),
		Bases:  c.LoadDirectoryFromID("bases-dir"),
		HostCA: c.LoadSecretFromID("host-ca-secret"),
	}
}

func TestBuildTranscript(t *testing.T) {
	for _, p := range []spec.Profile{spec.Upstream, spec.Offline} {
		t.Run(string(p), func(t *testing.T) {
			e := daggertest.Start(t, nil)
			c := e.Client(t)
			kgci, err := daggerbuild.Kgci(c, p, inputs(c))
			if err != nil {
				t.Fatal(err)
			}
			im, err := daggerbuild.Build(c, opts(p), inputs(c), kgci)
			if err != nil {
				t.Fatal(err)
			}
			if err := im.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := e.Transcript()
			for _, want := range []string{
				// kgci is built from the module's Go sources only, statically.
				`filter(include: ["go.mod","go.sum","ci/"])`,
				`withEnvVariable(name: "CGO_ENABLED", value: "0")`,
				`"go","build","-trimpath","-buildvcs=false","-o","/out/kgci","./ci/cmd/kgci"`,
				// Each image's config is written by kgci from ci/spec.
				`"/kgci","finalize","--image","backend","--profile","` + string(p) + `"`,
				`"/kgci","finalize","--image","frontend","--profile","` + string(p) + `"`,
			} {
				if !strings.Contains(got, want) {
					t.Errorf("no query contains %s", want)
				}
			}
			// The runtime configuration is kgci's to write, not Dagger's.
			for _, never := range []string{"withUser(", "withLabel(", "withDefaultArgs(", "withEntrypoint("} {
				if strings.Contains(got, never) {
					t.Errorf("the build calls %s; finalize sets the config", never)
				}
			}
			daggertest.Golden(t, "build-"+string(p), got)
		})
	}
}
