package daggertest_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/kidney-genetics/kidney-genetics-db/ci/daggertest"
)

// These run the module runtime built from main.go and the committed
// generated code, driven by the function-call protocol as an engine drives
// it: the constructor, then a function on the object it returned. They pin
// what the module does before and around the queries the package tests
// pin: argument checks, defaults, which function builds what.

const testRevision = "0123456789abcdef0123456789abcdef01234567"

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

var allBases = []string{"python.tar", "node.tar", "nginx.tar", "postgres.tar", "go.tar", "docker.tar"}

// answers combines resolvers: the first that answers wins.
func answers(rs ...daggertest.Resolver) daggertest.Resolver {
	return func(path []string, f *ast.Field) (any, bool) {
		for _, r := range rs {
			if r == nil {
				continue
			}
			if v, ok := r(path, f); ok {
				return v, ok
			}
		}
		return nil, false
	}
}

// basesHave answers the constructor's listing of --bases.
func basesHave(names ...string) daggertest.Resolver {
	return func(path []string, f *ast.Field) (any, bool) {
		if f.Name == "entries" && len(path) > 0 && strings.Contains(path[0], "bases-dir") {
			return names, true
		}
		return nil, false
	}
}

func construct(t *testing.T, rt, profile string, extra map[string]string, answer daggertest.Resolver) daggertest.Outcome {
	t.Helper()
	args := map[string]string{"source": `"source-dir"`, "profile": strconvQuote(profile)}
	if profile == "offline" {
		args["bases"] = `"bases-dir"`
		args["hostCa"] = `"host-ca-secret"`
	}
	for k, v := range extra {
		args[k] = v
	}
	return daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Args: args, Answer: answers(answer, basesHave(allBases...))})
}

func object(t *testing.T, rt, profile string, extra map[string]string) string {
	t.Helper()
	if extra == nil {
		extra = map[string]string{}
	}
	if _, ok := extra["revision"]; !ok {
		extra["revision"] = strconvQuote(testRevision)
	}
	if _, ok := extra["created"]; !ok {
		extra["created"] = `"2026-11-25T00:00:00Z"`
	}
	out := construct(t, rt, profile, extra, nil)
	if out.Error != "" {
		t.Fatalf("constructor failed: %s\n%s", out.Error, out.Output)
	}
	return string(out.Return)
}

func TestModuleConstructorRefusals(t *testing.T) {
	rt := daggertest.BuildModule(t)
	for _, tc := range []struct {
		name    string
		profile string
		extra   map[string]string
		answer  daggertest.Resolver
		want    string
	}{
		{"unknown profile", "airgapped", nil, nil, `unknown profile "airgapped"`},
		{"created is not a time", "upstream", map[string]string{"created": `"not-a-time"`}, nil, "not an RFC 3339 time"},
		{"revision is not a commit", "upstream", map[string]string{"revision": `"main"`}, nil, "not a git commit id"},
		{"offline without bases", "offline", map[string]string{"bases": "null"}, nil, "needs --bases DIR"},
		{"offline bases incomplete", "offline", nil, basesHave("python.tar", "node.tar", "nginx.tar", "postgres.tar"), "--bases lacks go.tar, docker.tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := map[string]string{"revision": strconvQuote(testRevision), "created": `"2026-11-25T00:00:00Z"`}
			for k, v := range tc.extra {
				extra[k] = v
			}
			if extra["bases"] == "null" {
				delete(extra, "bases")
				args := map[string]string{"source": `"source-dir"`, "profile": strconvQuote(tc.profile)}
				for k, v := range extra {
					args[k] = v
				}
				out := daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Args: args})
				if !strings.Contains(out.Error, tc.want) {
					t.Fatalf("error = %q, want %q", out.Error, tc.want)
				}
				return
			}
			out := construct(t, rt, tc.profile, extra, tc.answer)
			if !strings.Contains(out.Error, tc.want) {
				t.Fatalf("error = %q, want %q", out.Error, tc.want)
			}
			// Nothing was built or pulled before the refusal.
			for _, q := range out.Queries {
				if strings.Contains(q, "withExec") || strings.Contains(q, "from(") {
					t.Errorf("a refused call still sent %s", q)
				}
			}
		})
	}
}

// Without --revision/--created the labels come from the commit, as with
// `kgci build`: its id, and its commit time read with git.
func TestModuleLabelsFromGit(t *testing.T) {
	rt := daggertest.BuildModule(t)
	git := func(path []string, f *ast.Field) (any, bool) {
		switch {
		case f.Name == "commit":
			return testRevision, true
		case f.Name == "stdout":
			return "2026-11-20T10:00:00+01:00\n", true
		}
		return nil, false
	}
	out := construct(t, rt, "upstream", map[string]string{"git": `"git-ref"`}, git)
	if out.Error != "" {
		t.Fatalf("constructor failed: %s", out.Error)
	}
	var obj map[string]any
	if err := json.Unmarshal(out.Return, &obj); err != nil {
		t.Fatal(err)
	}
	if obj["Revision"] != testRevision || obj["Created"] != "2026-11-20T10:00:00+01:00" {
		t.Errorf("constructor kept revision %v, created %v; want the commit's", obj["Revision"], obj["Created"])
	}
	if !strings.Contains(out.Transcript(), `"git","-c","safe.directory=*","-C","/repo","log","-1","--format=%cI","`+testRevision+`"`) {
		t.Errorf("the commit time was not read with git log:\n%s", out.Transcript())
	}

	// Given values win and git is not asked.
	out = construct(t, rt, "upstream", map[string]string{"git": `"git-ref"`, "revision": strconvQuote(testRevision), "created": `"2026-01-01T00:00:00Z"`}, git)
	if out.Error != "" || strings.Contains(out.Transcript(), "commit") {
		t.Errorf("with both given: error %q, queries:\n%s", out.Error, out.Transcript())
	}
}

// `build backend` builds the backend only, and the offline backend needs
// no CA bundle (only the frontend's npm step does).
func TestModuleBuildsOneImage(t *testing.T) {
	rt := daggertest.BuildModule(t)
	noCA := object(t, rt, "offline", map[string]string{"hostCa": "null"})
	// hostCa: null leaves the secret out of the constructor's object.
	build := daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Function: "Build", ParentJSON: noCA})
	if build.Error != "" {
		t.Fatalf("Build: %s", build.Error)
	}
	backend := daggertest.Invoke(t, rt, daggertest.Call{Parent: "Images", Function: "Backend", ParentJSON: string(build.Return)})
	if backend.Error != "" {
		t.Fatalf("Backend: %s\n%s", backend.Error, backend.Output)
	}
	var id string
	if err := json.Unmarshal(backend.Return, &id); err != nil || !strings.Contains(id, "import(") {
		t.Fatalf("Backend returned %s, want the ID of the finalized image imported as a container", backend.Return)
	}
	got := backend.Transcript()
	if !strings.Contains(got, `"--image","backend"`) || strings.Contains(got, `"--image","frontend"`) || strings.Contains(got, "npm") {
		t.Errorf("building the backend touched the frontend:\n%s", got)
	}
	frontend := daggertest.Invoke(t, rt, daggertest.Call{Parent: "Images", Function: "Frontend", ParentJSON: string(build.Return)})
	if !strings.Contains(frontend.Error, "--host-ca=") {
		t.Errorf("offline frontend without the CA: error %q, want the --host-ca hint", frontend.Error)
	}
}

func TestModuleTestE2e(t *testing.T) {
	rt := daggertest.BuildModule(t)
	for _, profile := range []string{"upstream", "offline"} {
		t.Run(profile, func(t *testing.T) {
			out := daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Function: "TestE2e", ParentJSON: object(t, rt, profile, nil), Args: map[string]string{"runId": `"golden"`}})
			if out.Error != "" {
				t.Fatalf("TestE2e failed: %s\n%s", out.Error, out.Output)
			}
			var dir string
			if err := json.Unmarshal(out.Return, &dir); err != nil || !strings.Contains(dir, "directory(path:/results)") {
				t.Fatalf("TestE2e returned %s, want the ID of the checker's /results directory", out.Return)
			}
			if !strings.Contains(out.Transcript(), `"kgci","test-e2e","--dockerd","--profile","`+profile+`"`) {
				t.Errorf("the checks did not run as kgci test-e2e:\n%s", out.Transcript())
			}
		})
	}
}

func failingChecks(path []string, f *ast.Field) (any, bool) {
	switch f.Name {
	case "exitCode":
		return 1, true
	case "entries":
		return []string{"junit.xml", "results.json", "summary.md"}, true
	case "contents":
		return "1 passed, 1 failed: websocket.upgrade", true
	}
	return nil, false
}

func TestModuleTestE2eReportsFailures(t *testing.T) {
	rt := daggertest.BuildModule(t)
	parent := object(t, rt, "upstream", nil)
	out := daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Function: "TestE2e", ParentJSON: parent, Args: map[string]string{"runId": `"golden"`}, Answer: failingChecks})
	if !strings.Contains(out.Error, "websocket.upgrade") || len(out.Return) != 0 {
		t.Fatalf("error = %q, return = %s: want the failure summary as the function's error", out.Error, out.Return)
	}
	out = daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Function: "TestE2e", ParentJSON: parent, Args: map[string]string{"runId": `"golden"`, "allowFailure": "true"}, Answer: failingChecks})
	if out.Error != "" || len(out.Return) == 0 {
		t.Fatalf("with allowFailure: error = %q, return = %s: want the results directory", out.Error, out.Return)
	}
}

func TestModulePublish(t *testing.T) {
	rt := daggertest.BuildModule(t)
	parent := object(t, rt, "upstream", nil)
	args := map[string]string{"registry": `"registry.example.org:5000/kg"`, "username": `"bot"`, "password": `"registry-token"`, "version": `"v1.2.3"`, "runId": `"golden"`}
	out := daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Function: "Publish", ParentJSON: parent, Args: args})
	if out.Error != "" {
		t.Fatalf("Publish failed: %s\n%s", out.Error, out.Output)
	}
	var dir string
	if err := json.Unmarshal(out.Return, &dir); err != nil || !strings.Contains(dir, "directory(path:/results)") {
		t.Fatalf("Publish returned %s, want the results directory", out.Return)
	}
	got := out.Transcript()
	for _, want := range []string{
		`"kgci","publish","--images","/images","--results","/results","--registry","registry.example.org:5000","--namespace","kg","--revision","` + testRevision + `","--version","v1.2.3"`,
		`withSecretVariable(name: "KGCI_REGISTRY_PASSWORD"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("publish lacks %s", want)
		}
	}

	// Failing checks with --allow-failure: the results come back, nothing is pushed.
	args["allowFailure"] = "true"
	out = daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Function: "Publish", ParentJSON: parent, Args: args, Answer: failingChecks})
	if out.Error != "" || len(out.Return) == 0 || strings.Contains(out.Transcript(), `"kgci","publish"`) {
		t.Fatalf("failing checks: error %q, pushed %v", out.Error, strings.Contains(out.Transcript(), `"kgci","publish"`))
	}

	// Bad arguments are refused before anything is built.
	out = daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Function: "Publish", ParentJSON: parent, Args: map[string]string{"registry": `"ghcr.io/kg"`, "username": `"bot"`}})
	if !strings.Contains(out.Error, "both --username and --password") || strings.Contains(out.Transcript(), "withExec") {
		t.Fatalf("user without password: error %q; queries:\n%s", out.Error, out.Transcript())
	}
}
