package spec_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/moby/buildkit/solver/pb"
	digest "github.com/opencontainers/go-digest"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/google/go-cmp/cmp"

	"github.com/kidney-genetics/kidney-genetics-db/ci/daggerbuild"
	"github.com/kidney-genetics/kidney-genetics-db/ci/daggertest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/llbgraph"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// placement is what a copy op means, as far as both engines show it: which
// source (the build context, or a stage), which path of it, where it
// lands, whether a directory's contents or one file, owner and excludes.
type placement struct {
	From    string // "context" or "stage <name>"
	Src     string // relative to the repository root, or absolute in the stage
	To      string
	Dir     bool
	Owner   string
	Exclude string // patterns joined by ","
}

func (p placement) String() string {
	kind := "file"
	if p.Dir {
		kind = "dir contents"
	}
	return fmt.Sprintf("%s %s:%s -> %s owner=%q exclude=%q", kind, p.From, p.Src, p.To, p.Owner, p.Exclude)
}

// copies is the one table both translators are checked against: each op
// of the synthetic image and what it must mean. The build stage ends with
// a marker step so that a copy from it can be recognised in both outputs.
var copies = []struct {
	stage string
	op    spec.Op
	want  placement
}{
	{"build", spec.CopySrc{From: "conf/app.toml", To: "/etc/app/app.toml", Owner: "101:101"},
		placement{From: "context", Src: "conf/app.toml", To: "/etc/app/app.toml", Owner: "101:101"}},
	{"build", spec.CopySrc{From: "web/", To: "/srv/web", Dir: true, Exclude: []string{"*.map", "tmp"}},
		placement{From: "context", Src: "web", To: "/srv/web", Dir: true, Exclude: "*.map,tmp"}},
	{"final", spec.CopyStage{Stage: "build", From: "/out/tool", To: "/usr/local/bin/tool"},
		placement{From: "stage build", Src: "/out/tool", To: "/usr/local/bin/tool"}},
	{"final", spec.CopyStage{Stage: "build", From: "/srv/web", To: "/usr/share/web", Dir: true, Owner: "1000:1000"},
		placement{From: "stage build", Src: "/srv/web", To: "/usr/share/web", Dir: true, Owner: "1000:1000"}},
}

const marker = "end of stage build"

func syntheticImage() spec.Image {
	build := spec.Stage{Name: "build", Base: spec.BasePython}
	final := spec.Stage{Name: "final", Base: spec.BasePython}
	for _, c := range copies {
		if c.stage == "build" {
			build.Ops = append(build.Ops, c.op)
		} else {
			final.Ops = append(final.Ops, c.op)
		}
	}
	build.Ops = append(build.Ops, spec.Run{Args: []string{"echo", marker}})
	return spec.Image{Name: "synthetic", Stages: []spec.Stage{build, final}, Config: spec.Config{User: "1000:1000"}}
}

func wants() []string {
	var out []string
	for _, c := range copies {
		out = append(out, c.want.String())
	}
	sort.Strings(out)
	return out
}

// Both translators give each copy op the meaning spec.CopySrc documents:
// the same source placed at the same destination, as a directory's
// contents or as one file, with the same owner and excludes.
func TestTranslatorsAgree(t *testing.T) {
	img := syntheticImage()
	want := strings.Join(wants(), "\n")
	for name, got := range map[string][]placement{
		"llbgraph":    llbPlacements(t, img),
		"daggerbuild": daggerPlacements(t, img),
	} {
		var lines []string
		for _, p := range got {
			lines = append(lines, p.String())
		}
		sort.Strings(lines)
		if g := strings.Join(lines, "\n"); g != want {
			t.Errorf("%s places the copies differently from the table (- the table, + what it does):\n%s", name, cmp.Diff(strings.Split(want, "\n"), strings.Split(g, "\n")))
		}
	}
}

// llbPlacements reads the copy actions of the marshaled LLB graph.
func llbPlacements(t *testing.T, img spec.Image) []placement {
	def, err := llbgraph.Marshal(context.Background(), img, llbgraph.Inputs{Profile: spec.Upstream})
	if err != nil {
		t.Fatal(err)
	}
	ops := map[digest.Digest]*pb.Op{}
	for _, dt := range def.Def {
		var op pb.Op
		if err := op.UnmarshalVT(dt); err != nil {
			t.Fatal(err)
		}
		ops[digest.FromBytes(dt)] = &op
	}
	var out []placement
	for _, op := range ops {
		f := op.GetFile()
		if f == nil {
			continue
		}
		for _, a := range f.Actions {
			cp := a.GetCopy()
			if cp == nil {
				continue
			}
			p := placement{Src: cp.Src, To: cp.Dest, Dir: cp.DirCopyContents, Exclude: strings.Join(cp.ExcludePatterns, ",")}
			if o := cp.Owner; o != nil {
				p.Owner = fmt.Sprintf("%d:%d", o.User.GetByID(), o.Group.GetByID())
			}
			from := ops[digest.Digest(op.Inputs[a.SecondaryInput].Digest)]
			switch {
			case from.GetSource() != nil && strings.HasPrefix(from.GetSource().Identifier, "local://"):
				p.From, p.Src = "context", strings.TrimPrefix(cp.Src, "/")
			case from.GetExec() != nil && strings.Join(from.GetExec().Meta.Args, " ") == "echo "+marker:
				p.From = "stage build"
			default:
				t.Fatalf("copy %s -> %s reads from neither the context nor the build stage: %v", cp.Src, cp.Dest, from)
			}
			// The rest of the meaning: parents of To are created, From is
			// never a pattern (Dagger's calls have no other behaviour).
			if !cp.CreateDestPath || cp.AllowWildcard {
				t.Errorf("copy %s -> %s: createDestPath=%v allowWildcard=%v, want true, false", cp.Src, cp.Dest, cp.CreateDestPath, cp.AllowWildcard)
			}
			out = append(out, p)
		}
	}
	return out
}

// daggerPlacements reads the withFile and withDirectory calls of the
// queries the Dagger SDK sends, and resolves each source ID to the call
// chain that produced it (the fake engine's IDs are digests of the chain).
func daggerPlacements(t *testing.T, img spec.Image) []placement {
	e := daggertest.Start(t, nil)
	c := e.Client(t)
	ctr, err := daggerbuild.Stages(c, img, spec.Upstream, daggerbuild.Inputs{Source: c.LoadDirectoryFromID("source-dir")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctr.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids := map[string][]*ast.Field{} // fake ID -> the chain that made it
	copiesByChain := map[string][]*ast.Field{}
	var walk func(chain []*ast.Field, rendered []string, set ast.SelectionSet)
	walk = func(chain []*ast.Field, rendered []string, set ast.SelectionSet) {
		for _, sel := range set {
			f := sel.(*ast.Field)
			if len(f.SelectionSet) == 0 {
				if f.Name == "id" {
					ids[daggertest.ID(rendered)] = chain
				}
				continue
			}
			ch := append(chain[:len(chain):len(chain)], f)
			r := append(rendered[:len(rendered):len(rendered)], daggertest.Render(f))
			if f.Name == "withFile" || f.Name == "withDirectory" {
				copiesByChain[strings.Join(r, ".")] = ch
			}
			walk(ch, r, f.SelectionSet)
		}
	}
	for _, q := range e.Queries() {
		doc, err := parser.ParseQuery(&ast.Source{Input: q})
		if err != nil {
			t.Fatal(err)
		}
		walk(nil, nil, doc.Operations[0].SelectionSet)
	}
	var out []placement
	for _, chain := range copiesByChain {
		f := chain[len(chain)-1]
		p := placement{To: daggertest.StringArg(f, "path"), Dir: f.Name == "withDirectory", Owner: daggertest.StringArg(f, "owner")}
		if ex := f.Arguments.ForName("exclude"); ex != nil {
			var pats []string
			for _, v := range ex.Value.Children {
				pats = append(pats, v.Value.Raw)
			}
			p.Exclude = strings.Join(pats, ",")
		}
		src, ok := ids[daggertest.StringArg(f, "source")]
		if !ok {
			t.Fatalf("%s(path: %q): its source was never asked for by ID", f.Name, p.To)
		}
		last := src[len(src)-1]
		if want := map[bool]string{true: "directory", false: "file"}[p.Dir]; last.Name != want {
			t.Errorf("%s(path: %q) is given a %s", f.Name, p.To, last.Name)
		}
		p.Src = daggertest.StringArg(last, "path")
		switch {
		case src[0].Name == "loadDirectoryFromID" && daggertest.StringArg(src[0], "id") == "source-dir":
			p.From = "context"
		case len(src) > 1 && src[len(src)-2].Name == "withExec" && execArgs(src[len(src)-2]) == "echo "+marker:
			p.From = "stage build"
		default:
			t.Fatalf("%s(path: %q) reads from neither the context nor the build stage", f.Name, p.To)
		}
		out = append(out, p)
	}
	return out
}

func execArgs(f *ast.Field) string {
	a := f.Arguments.ForName("args")
	if a == nil {
		return ""
	}
	var out []string
	for _, v := range a.Value.Children {
		out = append(out, v.Value.Raw)
	}
	return strings.Join(out, " ")
}
