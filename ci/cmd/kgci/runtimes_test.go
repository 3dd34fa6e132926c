package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kidney-genetics/kidney-genetics-db/ci/checks"
	"github.com/kidney-genetics/kidney-genetics-db/ci/daggerrun"
	"github.com/kidney-genetics/kidney-genetics-db/ci/reproduce"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// pipelineTestE2E returns the test-e2e arguments scripts/pipeline.sh runs, with its
// variables filled in as a run of that profile would.
func pipelineTestE2E(t *testing.T, p spec.Profile) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "scripts", "pipeline.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)bin/kgci test-e2e (.*)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("scripts/pipeline.sh runs no `bin/kgci test-e2e`")
	}
	line := strings.NewReplacer(`"$profile"`, string(p), `"$results/images"`, "results/images", `"$results"`, "results").Replace(string(m[1]))
	words, err := reproduce.Split(line)
	if err != nil {
		t.Fatal(err)
	}
	return words
}

// Both runtimes run one command, so one check list: our CI (scripts/pipeline.sh,
// BuildKit + Docker) and the Dagger module (ci/daggerrun, kgci inside Dagger) ask
// test-e2e for every check, against the same compose file and budgets, on tarballs
// whose digests they record. Only where the engine and the files live differs.
func TestBothRuntimesRunTheSameChecks(t *testing.T) {
	for _, p := range []spec.Profile{spec.Offline, spec.Upstream} {
		t.Run(string(p), func(t *testing.T) {
			daggerArgs := daggerrun.TestArgs(p, "run", false)
			if daggerArgs[0] != "kgci" || daggerArgs[1] != "test-e2e" {
				t.Fatalf("the Dagger checker runs %q, not kgci test-e2e", daggerArgs[:2])
			}
			dagger, err := parseTestE2E(daggerArgs[2:])
			if err != nil {
				t.Fatalf("the Dagger checker's arguments do not parse: %v", err)
			}
			ours, err := parseTestE2E(pipelineTestE2E(t, p))
			if err != nil {
				t.Fatalf("scripts/pipeline.sh's arguments do not parse: %v", err)
			}
			names := func(f *testE2EFlags) []string {
				l, err := checks.Select(checks.All(), f.checks)
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, c := range l {
					out = append(out, c.Name)
				}
				return out
			}
			var all []string
			for _, c := range checks.All() {
				all = append(all, c.Name)
			}
			if got := names(dagger); !slices.Equal(got, all) {
				t.Errorf("the Dagger path runs %v, want every check %v", got, all)
			}
			if got := names(ours); !slices.Equal(got, all) {
				t.Errorf("scripts/pipeline.sh runs %v, want every check %v", got, all)
			}
			if dagger.profile != p || ours.profile != p {
				t.Errorf("profiles: dagger %s, ours %s, want %s", dagger.profile, ours.profile, p)
			}
			if dagger.images == "" || ours.images == "" {
				t.Errorf("both must test tarballs and record their digests: dagger --images %q, ours --images %q", dagger.images, ours.images)
			}
			// What decides the verdict is the same; engine, paths and run id may differ.
			type verdict struct {
				compose, budgets, buildJSON, tag string
				startup                          string
				keep                             bool
			}
			v := func(f *testE2EFlags) verdict {
				return verdict{f.compose, f.budgets, f.buildJSON, f.tag, f.startup.String(), f.keep}
			}
			if v(dagger) != v(ours) {
				t.Errorf("settings differ: dagger %+v, ours %+v", v(dagger), v(ours))
			}
			if !dagger.dockerd || ours.dockerd {
				t.Errorf("--dockerd: dagger %v (its container has no engine), ours %v (CI's dockerd runs it)", dagger.dockerd, ours.dockerd)
			}
		})
	}
}

// The comparison above is not vacuous: a restricted check list is noticed.
func TestSameChecksNoticesARestriction(t *testing.T) {
	f, err := parseTestE2E([]string{"--checks", "health,gzip"})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := checks.Select(checks.All(), f.checks)
	if len(l) == len(checks.All()) {
		t.Fatalf("--checks health,gzip selected all %d checks", len(l))
	}
}
