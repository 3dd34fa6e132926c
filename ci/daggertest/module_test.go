package daggertest_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/kidney-genetics/kidney-genetics-db/ci/daggertest"
)

// The module's API as the engine calls it: the constructor, then Build on
// the object the constructor returned. The runtime is the real module
// binary built from main.go and the committed generated code.
func TestModuleBuild(t *testing.T) {
	rt := daggertest.BuildModule(t)
	for _, profile := range []string{"upstream", "offline"} {
		t.Run(profile, func(t *testing.T) {
			args := map[string]string{
				"source":   `"source-dir"`,
				"profile":  strconvQuote(profile),
				"revision": `"0123456789abcdef0123456789abcdef01234567"`,
				"created":  `"2026-11-25T00:00:00Z"`,
			}
			if profile == "offline" {
				args["bases"] = `"bases-dir"`
				args["hostCa"] = `"host-ca-secret"`
			}
			ctor := daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Args: args})
			if ctor.Error != "" {
				t.Fatalf("constructor failed: %s\n%s", ctor.Error, ctor.Output)
			}
			var obj map[string]any
			if err := json.Unmarshal(ctor.Return, &obj); err != nil {
				t.Fatalf("constructor returned %s: %v", ctor.Return, err)
			}
			if obj["Profile"] != profile {
				t.Errorf("constructor kept profile %v, want %s", obj["Profile"], profile)
			}

			build := daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Function: "Build", ParentJSON: string(ctor.Return)})
			if build.Error != "" {
				t.Fatalf("Build failed: %s\n%s", build.Error, build.Output)
			}
			var images struct{ Backend, Frontend string }
			if err := json.Unmarshal(build.Return, &images); err != nil {
				t.Fatalf("Build returned %s: %v", build.Return, err)
			}
			// The containers handed back to the engine are the ones the
			// pipeline built, reloaded by ID into the module's types.
			for name, id := range map[string]string{"Backend": images.Backend, "Frontend": images.Frontend} {
				if !strings.HasPrefix(id, "id:loadContainerFromID(id:id:withUser(") {
					t.Errorf("Build returned %s = %q, want the ID of a container that ends with withUser", name, id)
				}
			}
			daggertest.Golden(t, "module-build-"+profile, build.Transcript())
		})
	}
}

func TestModuleRejectsUnknownProfile(t *testing.T) {
	rt := daggertest.BuildModule(t)
	out := daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Args: map[string]string{"source": `"source-dir"`, "profile": `"airgapped"`}})
	if !strings.Contains(out.Error, `unknown profile "airgapped"`) {
		t.Fatalf("constructor error = %q, want it to name the unknown profile", out.Error)
	}
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

func construct(t *testing.T, rt, profile string) string {
	t.Helper()
	args := map[string]string{"source": `"source-dir"`, "profile": strconvQuote(profile), "revision": `"0123456789abcdef0123456789abcdef01234567"`}
	if profile == "offline" {
		args["bases"] = `"bases-dir"`
		args["hostCa"] = `"host-ca-secret"`
	}
	ctor := daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Args: args})
	if ctor.Error != "" {
		t.Fatalf("constructor failed: %s\n%s", ctor.Error, ctor.Output)
	}
	return string(ctor.Return)
}

func TestModuleTestE2e(t *testing.T) {
	rt := daggertest.BuildModule(t)
	for _, profile := range []string{"upstream", "offline"} {
		t.Run(profile, func(t *testing.T) {
			args := map[string]string{"runId": `"golden"`}
			if profile == "offline" {
				// The offline profile has no Go image of its own.
				args["checker"] = `"checker-ctr"`
			}
			out := daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Function: "TestE2e", ParentJSON: construct(t, rt, profile), Args: args})
			if out.Error != "" {
				t.Fatalf("TestE2e failed: %s\n%s", out.Error, out.Output)
			}
			var dir string
			if err := json.Unmarshal(out.Return, &dir); err != nil || !strings.Contains(dir, "directory(path:/results)") {
				t.Fatalf("TestE2e returned %s, want the ID of the checker's /results directory", out.Return)
			}
			got := out.Transcript()
			hasGolang := strings.Contains(got, `from(address: "docker.io/library/golang:`)
			if hasGolang != (profile == "upstream") {
				t.Errorf("golang image used = %v, want it only when no checker container is given", hasGolang)
			}
			daggertest.Golden(t, "module-e2e-"+profile, got)
		})
	}
}

func TestModuleTestE2eReportsFailures(t *testing.T) {
	rt := daggertest.BuildModule(t)
	failing := func(path []string, f *ast.Field) (any, bool) {
		switch f.Name {
		case "exitCode":
			return 1, true
		case "contents":
			return "1 passed, 1 failed: websocket-ping", true
		}
		return nil, false
	}
	out := daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Function: "TestE2e", ParentJSON: construct(t, rt, "upstream"), Args: map[string]string{"runId": `"golden"`}, Answer: failing})
	if !strings.Contains(out.Error, "websocket-ping") || len(out.Return) != 0 {
		t.Fatalf("error = %q, return = %s: want the failure summary as the function's error", out.Error, out.Return)
	}
	out = daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Function: "TestE2e", ParentJSON: construct(t, rt, "upstream"), Args: map[string]string{"runId": `"golden"`, "allowFailure": "true"}, Answer: failing})
	if out.Error != "" || len(out.Return) == 0 {
		t.Fatalf("with allowFailure: error = %q, return = %s: want the results directory", out.Error, out.Return)
	}
}

func TestModulePublish(t *testing.T) {
	rt := daggertest.BuildModule(t)
	out := daggertest.Invoke(t, rt, daggertest.Call{Parent: "KidneyGenetics", Function: "Publish", ParentJSON: construct(t, rt, "upstream"), Args: map[string]string{
		"registry": `"registry.example.org:5000/kg"`, "username": `"bot"`, "password": `"registry-token"`, "tags": `["1.2.3","latest"]`,
	}})
	if out.Error != "" {
		t.Fatalf("Publish failed: %s\n%s", out.Error, out.Output)
	}
	var refs string
	if err := json.Unmarshal(out.Return, &refs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(refs), "\n")
	if len(lines) != 4 {
		t.Fatalf("Publish printed %q, want 4 references (2 images x 2 tags)", refs)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "registry.example.org:5000/kg/kidney_genetics_") || !strings.Contains(l, "@sha256:") {
			t.Errorf("reference %q is not a digest-pinned reference in the registry", l)
		}
	}
	if !strings.Contains(out.Transcript(), `withRegistryAuth(address: "registry.example.org:5000", secret: "id:loadSecretFromID(id:id:loadSecretFromID(id:registry-token)`) {
		t.Errorf("the password secret did not reach withRegistryAuth")
	}
}
