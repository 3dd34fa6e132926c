package spec_test

import (
	"strings"
	"testing"

	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// Copies outside the one meaning of the copy ops are refused before either
// translator sees them, with what to change in the message.
func TestValidateRefusesCopiesOutsideTheirMeaning(t *testing.T) {
	for _, tc := range []struct {
		op   spec.Op
		want string
	}{
		{spec.CopySrc{From: "web/*.js", To: "/srv/", Dir: true}, "wildcards are not supported"},
		{spec.CopySrc{From: "a.txt", To: "etc/a.txt"}, "must be an absolute path"},
		{spec.CopySrc{From: "a.txt", To: "/a.txt", Owner: "nginx:nginx"}, `owner "nginx:nginx": want "uid:gid", both numeric`},
		{spec.CopySrc{From: "a.txt", To: "/a.txt", Owner: "1000"}, `owner "1000": want "uid:gid"`},
		{spec.CopySrc{From: "a.txt", To: "/a.txt", Exclude: []string{"x"}}, "only make sense for a directory"},
		{spec.CopySrc{From: "../secrets", To: "/s", Dir: true}, "inside it"},
		{spec.CopySrc{From: "/etc/passwd", To: "/p"}, "relative to the repository root"},
		{spec.CopySrc{From: ".", To: "/src", Dir: true}, "relative to the repository root"},
		{spec.CopyStage{Stage: "build", From: "out/tool", To: "/tool"}, "want an absolute path"},
		{spec.CopyStage{Stage: "build", From: "/out", To: "/out", Dir: true, Owner: "root:root"}, `owner "root:root"`},
	} {
		im := spec.Image{Name: "t", Config: spec.Config{User: "1000:1000"}, Stages: []spec.Stage{
			{Name: "build", Base: spec.BasePython},
			{Name: "final", Base: spec.BasePython, Ops: []spec.Op{tc.op}},
		}}
		err := im.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error = %v, want it to contain %q", tc.op, err, tc.want)
		}
	}
	// The production images are inside the meaning.
	for _, p := range []spec.Profile{spec.Upstream, spec.Offline} {
		for _, im := range spec.Images(spec.Options{Profile: p}) {
			if err := im.Validate(); err != nil {
				t.Errorf("%s %s: %v", p, im.Name, err)
			}
		}
	}
}
