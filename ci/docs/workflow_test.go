package docs

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/kidney-genetics/kidney-genetics-db/ci/reproduce"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

var ciWorkflow = filepath.Join(repoRoot(), ".github", "workflows", "ci.yml")

// checkDaggerCalls resolves every dagger call step of the workflow against
// the Dagger module in dir and returns the functions called.
func checkDaggerCalls(t *testing.T, dir string) (map[string]bool, error) {
	t.Helper()
	src, err := os.ReadFile(ciWorkflow)
	if err != nil {
		t.Fatal(err)
	}
	steps, err := reproduce.DaggerSteps(src)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := reproduce.ParseModule(dir)
	if err != nil {
		t.Fatalf("parse the Dagger module: %v", err)
	}
	called := map[string]bool{}
	for _, s := range steps {
		// Runner values are opaque words here; what matters is the shape.
		args, _ := reproduce.Expand(s.Args, func(string) (string, error) { return "runner-value", nil })
		words, err := reproduce.Split(args)
		if err != nil {
			return nil, err
		}
		call, err := mod.ParseCall(words)
		if err != nil {
			return nil, &stepError{s.Name, err}
		}
		if p, ok := call.ConstructorFlag("profile"); ok {
			if _, err := spec.ParseProfile(p); err != nil {
				return nil, &stepError{s.Name, err}
			}
		}
		called[call.Function()] = true
	}
	return called, nil
}

type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return "step " + e.step + ": " + e.err.Error() }

// The workflow's dagger calls name functions, flags and required arguments
// that exist in main.go, and cover the end-to-end checks and publish (which
// builds and tests in the same session).
func TestWorkflowDaggerCallsMatchMainGo(t *testing.T) {
	called, err := checkDaggerCalls(t, repoRoot())
	if err != nil {
		t.Fatalf("%s does not match main.go: %v", ciWorkflow, err)
	}
	for _, fn := range []string{"test-e-2-e", "publish"} {
		if !called[fn] {
			t.Errorf("%s never calls the Dagger function %s (calls: %v)", ciWorkflow, fn, called)
		}
	}
}

// The same check against a copy of main.go whose TestE2e was renamed must
// fail: the test above is not vacuous.
func TestWorkflowCheckNoticesARenamedFunction(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	renamed := strings.ReplaceAll(string(b), ") TestE2e(", ") TestEndToEnd(")
	if renamed == string(b) {
		t.Fatal("main.go has no TestE2e method to rename")
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(renamed), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = checkDaggerCalls(t, dir)
	if err == nil || !strings.Contains(err.Error(), `function "test-e-2-e" is not in`) {
		t.Fatalf("err = %v, want the renamed function reported", err)
	}
}

// The action installs the engine version dagger.json pins.
func TestWorkflowDaggerVersionMatchesDaggerJSON(t *testing.T) {
	var cfg struct {
		EngineVersion string `json:"engineVersion"`
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(), "dagger.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	src, _ := os.ReadFile(ciWorkflow)
	steps, err := reproduce.DaggerSteps(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if "v"+strings.TrimPrefix(s.Version, "v") != cfg.EngineVersion {
			t.Errorf("step %q installs dagger %q; dagger.json pins %s", s.Name, s.Version, cfg.EngineVersion)
		}
	}
}

// Inputs of the pinned action versions (their action.yml). actionlint
// cannot check inputs of actions pinned by commit, so this does.
var actionInputs = map[string][]string{
	"actions/checkout":                  {"repository", "ref", "token", "ssh-key", "ssh-known-hosts", "ssh-strict", "ssh-user", "persist-credentials", "path", "clean", "filter", "sparse-checkout", "sparse-checkout-cone-mode", "fetch-depth", "fetch-tags", "show-progress", "lfs", "submodules", "set-safe-directory", "github-server-url", "allow-unsafe-pr-checkout"},
	"actions/setup-go":                  {"go-version", "go-version-file", "check-latest", "token", "cache", "cache-dependency-path", "architecture", "go-download-base-url"},
	"actions/upload-artifact":           {"name", "path", "if-no-files-found", "retention-days", "compression-level", "overwrite", "include-hidden-files", "archive"},
	"crazy-max/ghaction-github-runtime": {"github-token"},
	"sigstore/cosign-installer":         {"cosign-release", "install-dir", "use-sudo"},
	"github/codeql-action/upload-sarif": {"sarif_file", "checkout_path", "ref", "sha", "token", "matrix", "category", "wait-for-processing"},
	"dagger/dagger-for-github":          {"version", "commit", "dagger-flags", "verb", "workdir", "cloud-token", "module", "args", "engine-stop", "call", "shell", "check", "summary-path", "enable-github-summary"},
}

type wfStep struct {
	Name string            `yaml:"name"`
	If   string            `yaml:"if"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	With map[string]string `yaml:"with"`
	Env  map[string]string `yaml:"env"`
}

type wfJob struct {
	If          string            `yaml:"if"`
	Needs       []string          `yaml:"needs"`
	Timeout     int               `yaml:"timeout-minutes"`
	Permissions map[string]string `yaml:"permissions"`
	Steps       []wfStep          `yaml:"steps"`
}

type wfFile struct {
	On          map[string]yaml.Node `yaml:"on"`
	Permissions map[string]string    `yaml:"permissions"`
	Concurrency struct {
		Group string `yaml:"group"`
	} `yaml:"concurrency"`
	Jobs map[string]wfJob `yaml:"jobs"`
}

var pinned = regexp.MustCompile(`^([\w.-]+/[\w.-]+(?:/[\w.-]+)*)@[0-9a-f]{40}$`)

// The properties the project relies on, which actionlint does not judge:
// triggers, least privilege, pinned actions, timeouts, results always kept.
func TestWorkflowShape(t *testing.T) {
	src, err := os.ReadFile(ciWorkflow)
	if err != nil {
		t.Fatal(err)
	}
	var wf wfFile
	if err := yaml.Unmarshal(src, &wf); err != nil {
		t.Fatal(err)
	}
	var push struct{ Branches, Tags []string }
	pushNode, hasPush := wf.On["push"]
	if hasPush {
		if err := pushNode.Decode(&push); err != nil {
			t.Fatal(err)
		}
	}
	if _, pr := wf.On["pull_request"]; !pr || !slices.Equal(push.Branches, []string{"main"}) || !slices.Equal(push.Tags, []string{"v*"}) {
		t.Errorf("triggers: want pull_request and push to main and v* tags, got %v, push %+v", slices.Collect(maps.Keys(wf.On)), push)
	}
	if len(wf.Permissions) != 1 || wf.Permissions["contents"] != "read" {
		t.Errorf("workflow permissions = %v, want only contents: read", wf.Permissions)
	}
	if wf.Concurrency.Group == "" {
		t.Error("no concurrency group")
	}

	var summary, upload bool
	for id, j := range wf.Jobs {
		if j.Timeout <= 0 {
			t.Errorf("job %s has no timeout-minutes", id)
		}
		for scope, level := range j.Permissions {
			// The jobs that scan the images upload SARIF to code scanning.
			sarif := scope == "security-events" && (id == "release" || id == "pipeline")
			if level == "write" && !sarif && !(id == "release" && (scope == "packages" || scope == "id-token")) {
				t.Errorf("job %s may write %s: only release may write, and only packages (and id-token, for keyless signing); the scanning jobs may write security-events", id, scope)
			}
		}
		for _, s := range j.Steps {
			if s.Uses != "" {
				m := pinned.FindStringSubmatch(s.Uses)
				if m == nil {
					t.Errorf("job %s step %q: %s is not pinned to a commit", id, s.Name, s.Uses)
					continue
				}
				known, ok := actionInputs[m[1]]
				if !ok {
					t.Errorf("job %s uses %s, whose inputs this test does not know: add them", id, m[1])
				}
				for k := range s.With {
					if !slices.Contains(known, k) {
						t.Errorf("job %s step %q: %s has no input %q", id, s.Name, m[1], k)
					}
				}
				if m[1] == "actions/upload-artifact" && strings.Contains(s.With["path"], "results/") {
					upload = true
					if s.If != "always()" {
						t.Errorf("job %s step %q uploads results only when earlier steps pass (if: %q)", id, s.Name, s.If)
					}
				}
			}
			if strings.Contains(s.Run, "results/summary.md") && strings.Contains(s.Run, "GITHUB_STEP_SUMMARY") {
				summary = true
				if s.If != "always()" {
					t.Errorf("job %s step %q writes the summary only when earlier steps pass", id, s.Name)
				}
			}
		}
	}
	if !summary || !upload {
		t.Errorf("want a step writing results/summary.md to $GITHUB_STEP_SUMMARY (%v) and one uploading results/ (%v)", summary, upload)
	}

	// One build per run: each event runs exactly one job with exactly one Dagger
	// session, so what release pushes is what that same session tested.
	pipe, ok := wf.Jobs["pipeline"]
	if !ok {
		t.Fatal("no pipeline job")
	}
	pub, ok := wf.Jobs["release"]
	if !ok {
		t.Fatal("no release job")
	}
	if !strings.Contains(pipe.If, "github.event_name == 'pull_request'") || strings.Contains(pipe.If, "push") {
		t.Errorf("pipeline job condition %q: it runs for pull requests only (release builds for pushes)", pipe.If)
	}
	daggerSteps := func(j wfJob) []wfStep {
		var out []wfStep
		for _, s := range j.Steps {
			if strings.HasPrefix(s.Uses, reproduce.DaggerAction+"@") {
				out = append(out, s)
			}
		}
		return out
	}
	// Every Dagger session imports and exports the layer cache, with the cache
	// service exposed by an earlier step (GitHub gives it to actions only).
	for id, j := range map[string]wfJob{"pipeline": pipe, "release": pub} {
		exposed := false
		for _, s := range j.Steps {
			if strings.HasPrefix(s.Uses, "crazy-max/ghaction-github-runtime@") {
				exposed = true
			}
			if !strings.HasPrefix(s.Uses, reproduce.DaggerAction+"@") {
				continue
			}
			cfg := s.Env["_EXPERIMENTAL_DAGGER_CACHE_CONFIG"]
			for _, want := range []string{"type=gha", "mode=max", "scope=", "token=${{ env.ACTIONS_RUNTIME_TOKEN }}"} {
				if !strings.Contains(cfg, want) {
					t.Errorf("job %s step %q: _EXPERIMENTAL_DAGGER_CACHE_CONFIG %q lacks %q", id, s.Name, cfg, want)
				}
			}
			if !exposed {
				t.Errorf("job %s step %q uses the GitHub cache before a ghaction-github-runtime step exposes it", id, s.Name)
			}
		}
	}
	// The release signs what publish.json says was pushed, after the verdict.
	signs, verdictAt := -1, -1
	for i, s := range pub.Steps {
		if s.Name == "Verdict" {
			verdictAt = i
		}
		if strings.Contains(s.Run, "cosign sign --yes") && strings.Contains(s.Run, "results/publish.json") {
			signs = i
		}
	}
	if signs < 0 || signs < verdictAt || pub.Permissions["id-token"] != "write" {
		t.Errorf("release job: want a step after the verdict that signs results/publish.json's pinned digests with cosign (keyless: id-token: write); step %d, verdict %d, permissions %v", signs, verdictAt, pub.Permissions)
	}
	if n := len(daggerSteps(pipe)); n != 1 {
		t.Errorf("pipeline job has %d Dagger steps, want one session", n)
	}
	rs := daggerSteps(pub)
	if len(rs) != 1 {
		t.Fatalf("release job has %d Dagger steps, want one session that builds, tests and pushes", len(rs))
	}
	args := strings.Fields(rs[0].With["args"])
	if !slices.Contains(args, "publish") || !slices.Contains(args, "--allow-failure") || !strings.Contains(rs[0].With["args"], "export --path results") {
		t.Errorf("release calls %q: want publish --allow-failure ... export --path results (results always come back)", rs[0].With["args"])
	}
	if pub.Permissions["packages"] != "write" || !slices.Contains(pub.Needs, "unit") {
		t.Errorf("release job: permissions %v, needs %v", pub.Permissions, pub.Needs)
	}
	for _, want := range []string{"push", "refs/heads/main", "refs/tags/v"} {
		if !strings.Contains(pub.If, want) {
			t.Errorf("release job condition %q lacks %q: it must run only for pushes to main and v* tags", pub.If, want)
		}
	}
	var token, verdict, shown bool
	for _, s := range pub.Steps {
		if strings.Contains(s.With["args"], "--password env://GITHUB_TOKEN") && s.Env["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}" {
			token = true
		}
		if strings.Contains(s.Run, "results/publish.json") && strings.Contains(s.Run, ".tested_digest") {
			verdict = true
		}
		if strings.Contains(s.Run, "results/publish.md") && strings.Contains(s.Run, "GITHUB_STEP_SUMMARY") && s.If == "always()" {
			shown = true
		}
	}
	if !token {
		t.Error("release must hand GITHUB_TOKEN to Dagger as a secret reference (env://GITHUB_TOKEN) from secrets.GITHUB_TOKEN")
	}
	if !verdict || !shown {
		t.Errorf("release must fail unless publish.json shows tested = pushed digests (%v) and put publish.md in the job summary (%v)", verdict, shown)
	}
}
