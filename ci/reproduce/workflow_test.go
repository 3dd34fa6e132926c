package reproduce

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestKebabMatchesDaggerCLI(t *testing.T) {
	for in, want := range map[string]string{
		"Build":      "build",
		"TestE2e":    "test-e-2-e", // as dagger prints it: digits are words of their own
		"TestE2E":    "test-e-2-e",
		"imagesDir":  "images-dir",
		"Potato20":   "potato-20", // from the engine's own strcase tests
		"HTTPServer": "http-server",
		"keepGoing":  "keep-going",
		"publish":    "publish",
	} {
		if got := Kebab(in); got != want {
			t.Errorf("Kebab(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDaggerStepsFoldsLikeTheAction(t *testing.T) {
	src, err := os.ReadFile("testdata/ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	steps, err := DaggerSteps(src)
	if err != nil {
		t.Fatal(err)
	}
	var got [][3]string
	for _, s := range steps {
		got = append(got, [3]string{s.Job, s.Verb, s.Args})
	}
	want := [][3]string{
		{"pipeline", "call", "--profile upstream build backend export --path results/images/backend.tar"},
		{"pipeline", "call", "--profile=offline test-e-2-e    --allow-failure export --path results"},
		{"publish", "call", `--revision ${{ github.sha }} publish --registry ghcr.io/x --username ${{ github.actor }} --password env://GITHUB_TOKEN --tags "${{ github.ref_name }}"`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("steps:\n%q\nwant\n%q", got, want)
	}
	if steps[2].JobIf != "github.ref == 'refs/heads/main'" || steps[2].If != "success()" {
		t.Errorf("conditions not kept: %+v", steps[2])
	}
}

func TestSplit(t *testing.T) {
	for in, want := range map[string][]string{
		`a  b`:                   {"a", "b"},
		`--v "1 2" 'x y' z\ w`:   {"--v", "1 2", "x y", "z w"},
		`--p="a\"b" ''`:          {`--p=a"b`, ""},
		`env://TOKEN sha256:abc`: {"env://TOKEN", "sha256:abc"},
	} {
		got, err := Split(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Split(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`a $HOME`, `"$X"`, `'a;b'`, "a `id`", `a; rm -rf x`, `a | b`, `results/*`, `'open`, `"open`} {
		if _, err := Split(bad); err == nil {
			t.Errorf("Split(%q) accepted shell syntax that bash would act on", bad)
		}
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"github.sha": "abc", "github.ref_name": "v1.2.3"}
	lookup := func(e string) (string, error) {
		v, ok := vars[e]
		if !ok {
			return "", os.ErrNotExist
		}
		return v, nil
	}
	got, err := Expand("x ${{ github.sha }} ${{github.ref_name}}", lookup)
	if err != nil || got != "x abc v1.2.3" {
		t.Errorf("Expand = %q, %v", got, err)
	}
	if _, err := Expand("${{ secrets.X }}", lookup); err == nil {
		t.Error("unknown expression expanded without error")
	}
}

func fixtureModule(t *testing.T) *Module {
	t.Helper()
	m, err := ParseModule("testdata/module")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseModule(t *testing.T) {
	m := fixtureModule(t)
	if m.Object != "KidneyGenetics" {
		t.Errorf("object = %s", m.Object)
	}
	// Source is an exported field: dagger exposes it as a function.
	if got, want := m.FunctionNames(), []string{"build", "publish", "source", "test-e-2-e"}; !reflect.DeepEqual(got, want) {
		t.Errorf("functions = %v, want %v", got, want)
	}
	wantCtor := []Param{
		{GoName: "source", Flag: "source", Type: "*dagger.Directory", Optional: true},
		{GoName: "profile", Flag: "profile", Type: "string", Optional: true, Default: "upstream"},
		{GoName: "revision", Flag: "revision", Type: "string", Optional: true},
		// camelCase becomes kebab-case, as dagger's CLI spells it.
		{GoName: "vulnDb", Flag: "vuln-db", Type: "*dagger.Directory", Optional: true},
	}
	if !reflect.DeepEqual(m.Constructor.Params, wantCtor) {
		t.Errorf("constructor params = %+v", m.Constructor.Params)
	}
	pub := m.Functions["publish"]
	var required []string
	for _, p := range pub.Params {
		if !p.Optional {
			required = append(required, p.Flag)
		}
	}
	if !reflect.DeepEqual(required, []string{"registry", "tags"}) {
		t.Errorf("publish required = %v", required)
	}
	if pub.Returns != "string" || m.Functions["build"].Returns != "*Images" {
		t.Errorf("returns: publish %s, build %s", pub.Returns, m.Functions["build"].Returns)
	}
}

func TestParseCall(t *testing.T) {
	m := fixtureModule(t)
	parse := func(s string) (*Call, error) {
		w, err := Split(s)
		if err != nil {
			t.Fatal(err)
		}
		return m.ParseCall(w)
	}

	c, err := parse("--progress plain --profile=offline test-e-2-e --allow-failure export --path results")
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := c.ConstructorFlag("profile"); p != "offline" || c.Function() != "test-e-2-e" || len(c.Chain) != 2 || c.Chain[1].Name != "export" {
		t.Errorf("call = %+v", c)
	}
	if v, _ := c.Flag("allow-failure"); v != "true" {
		t.Errorf("bool flag without value = %q, want true", v)
	}
	if _, err := parse("--profile upstream build backend export --path b.tar"); err != nil {
		t.Errorf("chain through a module object's field: %v", err)
	}
	if _, err := parse("--revision abc publish --registry r --tags a,b --username u --password env:TOKEN"); err != nil {
		t.Errorf("legacy env: secret form: %v", err)
	}

	for in, wantErr := range map[string]string{
		"--profile upstream test-e2e":                               `function "test-e2e" is not in main.go's KidneyGenetics (which has: build, publish, source, test-e-2-e)`,
		"build secret":                                              `function "secret" is not in Images (returned by build) (which has: backend, frontend)`,
		"--profle upstream build":                                   "flag --profle is not an argument of the constructor",
		"build --fast":                                              "flag --fast is not an argument of build",
		"publish --registry ghcr.io --username u":                   "publish needs --tags",
		"publish --tags x --registry r --password hunter2":          "is a secret: pass a reference such as env://NAME",
		"test-e-2-e export":                                         "export needs --path",
		"test-e-2-e export --path x stdout":                         "returns string, on which nothing can be chained",
		"--profile upstream":                                        "no function named",
		"publish --registry r --tags t --password env://T contents": "string, on which nothing can be chained",
	} {
		_, err := parse(in)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: err = %v, want %q", in, err, wantErr)
		}
	}
}
