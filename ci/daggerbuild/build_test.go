package daggerbuild_test

import (
	"strings"
	"testing"

	"dagger.io/dagger"

	"github.com/kidney-genetics/kidney-genetics-db/ci/daggerbuild"
	"github.com/kidney-genetics/kidney-genetics-db/ci/daggertest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

func client(t *testing.T) (*daggertest.Engine, *dagger.Client) {
	e := daggertest.Start(t, nil)
	return e, e.Client(t)
}

func image(ops ...spec.Op) spec.Image {
	return spec.Image{Name: "t", Stages: []spec.Stage{{Name: "only", Base: spec.BasePython, Ops: ops}}, Config: spec.Config{User: "1000:1000"}}
}

// Mistakes in the inputs or the description are reported before anything
// is sent to an engine, with the fix in the message.
func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		im      spec.Image
		profile spec.Profile
		in      func(*dagger.Client) daggerbuild.Inputs
		want    string
	}{
		{"offline without bases", image(), spec.Offline, func(c *dagger.Client) daggerbuild.Inputs {
			return daggerbuild.Inputs{Source: c.Directory()}
		}, "--bases=DIR"},
		{"CA step without the CA", image(spec.Run{Args: []string{"npm", "ci"}, HostCA: true}), spec.Upstream, func(c *dagger.Client) daggerbuild.Inputs {
			return daggerbuild.Inputs{Source: c.Directory()}
		}, "--host-ca="},
		{"exclude on a file", image(spec.CopySrc{From: "a.txt", To: "/a.txt", Exclude: []string{"x"}}), spec.Upstream, func(c *dagger.Client) daggerbuild.Inputs {
			return daggerbuild.Inputs{Source: c.Directory()}
		}, "only make sense for a directory"},
		{"root user", spec.Image{Name: "t", Stages: []spec.Stage{{Name: "s", Base: spec.BasePython}}, Config: spec.Config{User: "root"}}, spec.Upstream, func(c *dagger.Client) daggerbuild.Inputs {
			return daggerbuild.Inputs{Source: c.Directory()}
		}, "non-root"},
		{"no source", image(), spec.Upstream, func(c *dagger.Client) daggerbuild.Inputs { return daggerbuild.Inputs{} }, "no source directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, c := client(t)
			_, err := daggerbuild.Stages(c, tc.im, tc.profile, tc.in(c))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
			if n := len(e.Queries()); n != 0 {
				t.Errorf("a refused description still sent %d queries", n)
			}
		})
	}
}

// Bad label values never reach an engine: the same rule as `kgci build`.
func TestBuildImageRefusesBadOptions(t *testing.T) {
	e, c := client(t)
	for _, o := range []spec.Options{
		{Profile: spec.Upstream, Created: "not-a-time"},
		{Profile: spec.Upstream, Revision: "main"},
		{Profile: "airgapped"},
	} {
		if _, err := daggerbuild.BuildImage(c, "backend", o, daggerbuild.Inputs{Source: c.Directory()}, c.LoadFileFromID("kgci-file")); err == nil {
			t.Errorf("options %+v were accepted", o)
		}
	}
	if n := len(e.Queries()); n != 0 {
		t.Errorf("refused options still sent %d queries", n)
	}
}

// Finalize hands kgci the image as a docker-archive (what ci/imageconfig
// reads) with the options the labels come from.
func TestFinalizeArgs(t *testing.T) {
	o := spec.Options{Profile: spec.Offline, Revision: "0123456789abcdef0123456789abcdef01234567", Created: "2026-11-25T00:00:00Z"}
	got := strings.Join(daggerbuild.FinalizeArgs("frontend", o, "/in.tar", "/out.tar"), " ")
	want := "/kgci finalize --image frontend --profile offline --revision 0123456789abcdef0123456789abcdef01234567 --created 2026-11-25T00:00:00Z --in /in.tar --out /out.tar"
	if got != want {
		t.Fatalf("FinalizeArgs = %s\nwant %s", got, want)
	}
}

// A step's own environment does not outlive the step: the stage's values
// come back afterwards.
func TestStepScopedSettingsAreRestored(t *testing.T) {
	e, c := client(t)
	im := image(
		spec.Workdir{Path: "/a"},
		spec.Env{KV: spec.KV{Key: "X", Value: "stage"}},
		spec.Run{Args: []string{"make"}, Env: []spec.KV{{Key: "X", Value: "step"}, {Key: "Y", Value: "step"}}},
	)
	ctr, err := daggerbuild.Stages(c, im, spec.Upstream, daggerbuild.Inputs{Source: c.Directory()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctr.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	q := e.Queries()
	if len(q) != 1 {
		t.Fatalf("%d queries, want 1", len(q))
	}
	chain := chainOf(q[0])
	want := []string{
		`withWorkdir(path:"/a")`, `withEnvVariable(name:"X",value:"stage")`,
		`withEnvVariable(name:"X",value:"step")`, `withEnvVariable(name:"Y",value:"step")`,
		`withExec(args:["make"])`,
		`withEnvVariable(name:"X",value:"stage")`, `withoutEnvVariable(name:"Y")`,
	}
	if strings.Join(chain, " ") != strings.Join(want, " ") {
		t.Errorf("call chain\n got %s\nwant %s", strings.Join(chain, " "), strings.Join(want, " "))
	}
}

// chainOf lists the with*/without* calls of a one-chain query, arguments
// in name order.
func chainOf(query string) []string {
	var out []string
	for _, line := range strings.Split(daggertest.Pretty(query), "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), "{"))
		if strings.HasPrefix(line, "with") {
			out = append(out, strings.ReplaceAll(strings.ReplaceAll(line, ": ", ":"), ", ", ","))
		}
	}
	return out
}
