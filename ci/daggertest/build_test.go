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
			im, err := daggerbuild.Build(c, opts(p), inputs(c))
			if err != nil {
				t.Fatal(err)
			}
			if err := im.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			daggertest.Golden(t, "build-"+string(p), e.Transcript())
			_ = strings.Join
		})
	}
}
