package reproduce

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/checks"
	"github.com/kidney-genetics/kidney-genetics-db/ci/report"
)

// ciYAML is a workflow shaped like ours: build, then test-e-2-e, then a
// publish step that must never be reproduced.
func ciYAML(profile string) string {
	return `name: ci
on: [push]
jobs:
  pipeline:
    runs-on: ubuntu-24.04
    steps:
      - name: Build backend image
        uses: dagger/dagger-for-github@27b130bf0f79a7f6fbbbe0fbca6760dc9bb40a77
        with:
          version: v0.20.0
          verb: call
          args: --profile ` + profile + ` build backend export --path results/images/backend.tar
      - name: Build frontend image
        uses: dagger/dagger-for-github@27b130bf0f79a7f6fbbbe0fbca6760dc9bb40a77
        with:
          version: v0.20.0
          args: --profile ` + profile + ` build frontend export --path results/images/frontend.tar
      - name: End-to-end checks
        uses: dagger/dagger-for-github@27b130bf0f79a7f6fbbbe0fbca6760dc9bb40a77
        with:
          version: v0.20.0
          args: >-
            --profile ` + profile + `
            test-e-2-e --allow-failure export --path results
  publish:
    runs-on: ubuntu-24.04
    steps:
      - name: Publish
        uses: dagger/dagger-for-github@27b130bf0f79a7f6fbbbe0fbca6760dc9bb40a77
        with:
          args: publish --registry ghcr.io/x --username ${{ github.actor }} --password env://GITHUB_TOKEN --tags ${{ github.ref_name }}
`
}

// fakeKgci stands in for ./ci/cmd/kgci at the reproduced commit: it logs
// its arguments, and test-e2e writes the results fixture and fails.
const fakeKgci = `package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	f, _ := os.OpenFile(os.Getenv("FAKE_LOG"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	fmt.Fprintln(f, strings.Join(os.Args[1:], " "))
	f.Close()
	if os.Args[1] != "test-e2e" {
		return
	}
	if p := os.Getenv("FAKE_PIDFILE"); p != "" {
		os.WriteFile(p, []byte(fmt.Sprint(os.Getpid())), 0o644)
		time.Sleep(time.Minute)
	}
	os.MkdirAll("results/logs", 0o755)
	for _, n := range []string{"results.json", "logs/backend.log"} {
		b, err := os.ReadFile(filepath.Join("fixture", n))
		if err != nil {
			panic(err)
		}
		os.WriteFile(filepath.Join("results", n), b, 0o644)
	}
	os.Exit(1)
}
`

// sampleRun is a failed run as ci/report records it.
func sampleRun() *report.Run {
	return &report.Run{
		Command: "test-e2e", Runtime: "docker", Profile: "offline", RunID: "r1", Started: time.Unix(0, 0),
		Results: []checks.Result{
			{Name: "health.frontend", Group: "health", Status: checks.Pass, Message: "200 in 3ms"},
			{Name: "health.backend", Group: "health", Status: checks.Fail, Message: "GET /api/health: 503; check DATABASE_URL",
				Details: "HTTP/1.1 503 Service Unavailable\n{\"status\":\"degraded\"}"},
			{Name: "websocket.ping", Group: "websocket", Status: checks.Fail, Message: "no pong"},
		},
		Logs: []string{"logs/backend.log"},
	}
}

func backendLog() string {
	var b strings.Builder
	for i := 1; i <= 50; i++ {
		fmt.Fprintf(&b, "backend line %d\n", i)
	}
	return b.String()
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testRepo makes a repository with two commits: the first runs CI with
// the offline profile, the second with upstream. It returns both shas.
func testRepo(t *testing.T) (repo, offline, upstream string) {
	t.Helper()
	repo = t.TempDir()
	git(t, repo, "init", "-q", "-b", "main")
	module, err := os.ReadFile("testdata/module/main.go")
	if err != nil {
		t.Fatal(err)
	}
	js, err := report.JSON(sampleRun())
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(repo, "main.go"), string(module))
	write(t, filepath.Join(repo, "go.mod"), "module fake\n\ngo 1.26\n")
	write(t, filepath.Join(repo, "ci/cmd/kgci/main.go"), fakeKgci)
	write(t, filepath.Join(repo, "fixture/results.json"), string(js))
	write(t, filepath.Join(repo, "fixture/logs/backend.log"), backendLog())
	write(t, filepath.Join(repo, WorkflowPath), ciYAML("offline"))
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "offline")
	offline = git(t, repo, "rev-parse", "HEAD")
	write(t, filepath.Join(repo, WorkflowPath), ciYAML("upstream"))
	git(t, repo, "commit", "-q", "-am", "upstream")
	return repo, offline, git(t, repo, "rev-parse", "HEAD")
}

// testWorktree adds a worktree that is removed when the test ends, even
// when it fails half-way; cleanup may also be called earlier.
func testWorktree(t *testing.T, repo, sha string) (string, func() error) {
	t.Helper()
	wt, cleanup, err := addWorktree(context.Background(), repo, sha)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanup() })
	return wt, cleanup
}

func worktrees(t *testing.T, repo string) int {
	return strings.Count(git(t, repo, "worktree", "list", "--porcelain"), "worktree ")
}

func TestPlanReadsTheWorkflowAtThatCommit(t *testing.T) {
	repo, offline, upstream := testRepo(t)
	for _, c := range []struct{ sha, profile string }{{offline, "offline"}, {upstream, "upstream"}} {
		wt, cleanup := testWorktree(t, repo, c.sha)
		if got := git(t, wt, "rev-parse", "HEAD"); got != c.sha {
			t.Errorf("worktree at %s, want %s", got, c.sha)
		}
		// Dagger loads the contextual git from the directory's own .git:
		// a `git worktree` (.git a file) fails there, a clone does not.
		if fi, err := os.Stat(filepath.Join(wt, ".git")); err != nil || !fi.IsDir() {
			t.Errorf("%s/.git is not a repository directory (%v)", wt, err)
		}

		r, err := plan(wt, c.sha, "dagger", "")
		if err != nil {
			t.Fatal(err)
		}
		var got [][]string
		for _, s := range r.Commands {
			got = append(got, s.Argv)
		}
		want := [][]string{
			{"dagger", "--progress", "plain", "call", "--profile", c.profile, "build", "backend", "export", "--path", "results/images/backend.tar"},
			{"dagger", "--progress", "plain", "call", "--profile", c.profile, "build", "frontend", "export", "--path", "results/images/frontend.tar"},
			{"dagger", "--progress", "plain", "call", "--profile", c.profile, "test-e-2-e", "--allow-failure", "export", "--path", "results"},
		}
		if !reflect.DeepEqual(got, want) || r.DaggerVersion != "v0.20.0" {
			t.Errorf("dagger plan at %s: %q (dagger %s)\nwant %q", c.profile, got, r.DaggerVersion, want)
		}
		wantTerm := []string{
			"dagger call --profile " + c.profile + " build backend terminal",
			"dagger call --profile " + c.profile + " build frontend terminal",
		}
		if !reflect.DeepEqual(r.Terminals, wantTerm) {
			t.Errorf("terminal hints = %q, want %q", r.Terminals, wantTerm)
		}

		r, err = plan(wt, c.sha, "local", "")
		if err != nil {
			t.Fatal(err)
		}
		got = nil
		for _, s := range r.Commands {
			got = append(got, s.Argv)
		}
		want = [][]string{
			{"go", "run", "./ci/cmd/kgci", "build", "--out", "results/images", "--profile", c.profile},
			{"go", "run", "./ci/cmd/kgci", "test-e2e", "--images", "results/images", "--results", "results", "--profile", c.profile},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("local plan at %s: %q\nwant %q", c.profile, got, want)
		}

		if err := cleanup(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Dir(wt)); !os.IsNotExist(err) {
			t.Errorf("worktree directory %s still exists after cleanup (%v)", wt, err)
		}
		if n := worktrees(t, repo); n != 1 {
			t.Errorf("git still lists %d worktrees after cleanup", n)
		}
	}
}

func TestPlanRefusesAWorkflowThatDoesNotMatchMainGo(t *testing.T) {
	repo, _, _ := testRepo(t)
	write(t, filepath.Join(repo, WorkflowPath), strings.Replace(ciYAML("offline"), "test-e-2-e", "test-e2e", 1))
	git(t, repo, "commit", "-q", "-am", "renamed")
	sha := git(t, repo, "rev-parse", "HEAD")
	wt, _ := testWorktree(t, repo, sha)
	_, err := plan(wt, sha, "local", "")
	if err == nil || !strings.Contains(err.Error(), `"End-to-end checks"`) || !strings.Contains(err.Error(), `function "test-e2e" is not in`) {
		t.Fatalf("err = %v", err)
	}
}

// The whole command with the local engine: it runs that commit's kgci with
// the workflow's profile, keeps the results, prints the first failure with
// its log excerpt and removes the worktree.
func TestReproduceLocalPrintsFirstFailureAndCleansUp(t *testing.T) {
	repo, offline, _ := testRepo(t)
	t.Chdir(repo)
	logf := filepath.Join(t.TempDir(), "calls.log")
	t.Setenv("FAKE_LOG", logf)
	results := filepath.Join(t.TempDir(), "results")

	var out, errOut bytes.Buffer
	err := Run(context.Background(), Options{Commit: offline[:10], Engine: "local", Results: results}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "test-e2e") {
		t.Fatalf("err = %v, want the failing test-e2e step\n%s\n%s", err, out.String(), errOut.String())
	}
	calls, _ := os.ReadFile(logf)
	if string(calls) != "build --out results/images --profile offline\ntest-e2e --images results/images --results results --profile offline\n" {
		t.Errorf("kgci calls:\n%s", calls)
	}
	o := out.String()
	for _, want := range []string{
		"first failing check: health.backend",
		"GET /api/health: 503; check DATABASE_URL",
		`{"status":"degraded"}`,
		"logs/backend.log (last 30 lines)",
		"backend line 50",
		"results of the run: " + results,
	} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(o, "backend line 20\n") || strings.Contains(o, "first failing check: websocket.ping") {
		t.Errorf("output shows more than the first failure and the log tail:\n%s", o)
	}
	if _, err := os.Stat(filepath.Join(results, report.JSONFile)); err != nil {
		t.Errorf("results not kept: %v", err)
	}
	if n := worktrees(t, repo); n != 1 {
		t.Errorf("%d worktrees left behind", n)
	}
}

// Ctrl-C: the child (and its own children) get SIGTERM, the command
// returns promptly and the worktree is still removed.
func TestReproduceInterruptedCleansUp(t *testing.T) {
	repo, offline, _ := testRepo(t)
	t.Chdir(repo)
	t.Setenv("FAKE_LOG", filepath.Join(t.TempDir(), "calls.log"))
	pidfile := filepath.Join(t.TempDir(), "pid")
	t.Setenv("FAKE_PIDFILE", pidfile)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Commit: offline, Engine: "local", Results: t.TempDir()}, &bytes.Buffer{}, &bytes.Buffer{})
	}()
	var pid int
	for deadline := time.Now().Add(2 * time.Minute); pid == 0; {
		if b, err := os.ReadFile(pidfile); err == nil {
			pid, _ = strconv.Atoi(string(b))
		}
		select {
		case err := <-done:
			t.Fatalf("reproduce ended before test-e2e started: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the fake test-e2e never started")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("an interrupted reproduction reported success")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("reproduce did not return within 20s of the interrupt")
	}
	// The fake runs under `go run`: its grandchild must be gone too.
	for deadline := time.Now().Add(5 * time.Second); alive(pid); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("test-e2e process %d still running 5s after the interrupt", pid)
		}
	}
	if n := worktrees(t, repo); n != 1 {
		t.Errorf("%d worktrees left behind", n)
	}
}

// alive is false for a process that is gone or a zombie (dead, waiting for
// a parent that may never reap it in a container without an init).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func TestReproduceWithoutDaggerSaysHowToInstall(t *testing.T) {
	repo, _, upstream := testRepo(t)
	t.Chdir(repo)
	// Only git and go: no dagger.
	bin := t.TempDir()
	for _, tool := range []string{"git", "go"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	err := Run(context.Background(), Options{Commit: upstream, Engine: "dagger"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("reproduce with the dagger engine succeeded without a dagger CLI")
	}
	for _, want := range []string{"dagger CLI is not on PATH", "DAGGER_VERSION=v0.20.0", "install.sh", "--engine local"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if n := worktrees(t, repo); n != 1 {
		t.Errorf("%d worktrees left behind", n)
	}
}

func TestReadResultsNeedsTheKnownSchema(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, report.JSONFile), `{"schema":"kgci.e2e.results/v999","checks":[]}`)
	if _, err := readResults(dir); err == nil || !strings.Contains(err.Error(), report.SchemaVersion) {
		t.Errorf("err = %v, want a schema mismatch", err)
	}
}

// fakeDagger records its calls; test-e-2-e exports the failed results and
// succeeds, as `dagger call test-e-2-e --allow-failure export` does.
const fakeDagger = `#!/bin/sh
if [ "$1" = version ]; then echo "dagger v0.20.0 (image://registry.dagger.io/engine:v0.20.0) linux/amd64"; exit 0; fi
echo "$*" >> "$FAKE_LOG"
case "$*" in *test-e-2-e*)
  mkdir -p results/logs && cp fixture/results.json results/ && cp fixture/logs/backend.log results/logs/ ;;
esac
`

// With the dagger engine the calls are the workflow's, word for word; a
// run whose checks failed fails even though dagger exited 0, and the hints
// name the calls that open a terminal.
func TestReproduceDaggerJudgesTheResults(t *testing.T) {
	repo, offline, _ := testRepo(t)
	t.Chdir(repo)
	bin := t.TempDir()
	write(t, filepath.Join(bin, "dagger"), fakeDagger)
	if err := os.Chmod(filepath.Join(bin, "dagger"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	logf := filepath.Join(t.TempDir(), "calls.log")
	t.Setenv("FAKE_LOG", logf)

	var out bytes.Buffer
	err := Run(context.Background(), Options{Commit: offline, Results: t.TempDir(), Engine: "dagger"}, &out, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "end-to-end checks failed: 2 of 3") {
		t.Fatalf("err = %v\n%s", err, out.String())
	}
	calls, _ := os.ReadFile(logf)
	want := "--progress plain call --profile offline build backend export --path results/images/backend.tar\n" +
		"--progress plain call --profile offline build frontend export --path results/images/frontend.tar\n" +
		"--progress plain call --profile offline test-e-2-e --allow-failure export --path results\n"
	if string(calls) != want {
		t.Errorf("dagger calls:\n%s\nwant:\n%s", calls, want)
	}
	for _, w := range []string{
		"first failing check: health.backend",
		"dagger call -i --profile offline test-e-2-e export --path results\n",
		"dagger call --profile offline build backend terminal\n",
		"dagger call --profile offline build frontend terminal\n",
	} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

// CI downloads its vulnerability database in a step of its own; a checkout has none, so
// the flag is dropped (dagger would refuse a missing directory) and a note says so. A
// database that is there is kept.
func TestPlanDropsAMissingVulnDB(t *testing.T) {
	repo, _, _ := testRepo(t)
	write(t, filepath.Join(repo, WorkflowPath), strings.Replace(ciYAML("offline"), "test-e-2-e --allow-failure", "--vuln-db .vulndb test-e-2-e --allow-failure", 1))
	git(t, repo, "commit", "-q", "-am", "with a vulnerability database")
	sha := git(t, repo, "rev-parse", "HEAD")
	wt, _ := testWorktree(t, repo, sha)
	r, err := plan(wt, sha, "dagger", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Commands[2].Argv, " "); got != "dagger --progress plain call --profile offline test-e-2-e --allow-failure export --path results" {
		t.Errorf("without .vulndb: %s", got)
	}
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "skips supplychain.vulnerabilities") || !strings.Contains(r.Notes[0], "vulndb update --dir "+filepath.Join(wt, ".vulndb")) {
		t.Errorf("notes = %q", r.Notes)
	}

	if err := os.MkdirAll(filepath.Join(wt, ".vulndb"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r, err = plan(wt, sha, "dagger", ""); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Commands[2].Argv, " "); got != "dagger --progress plain call --profile offline --vuln-db .vulndb test-e-2-e --allow-failure export --path results" || len(r.Notes) != 0 {
		t.Errorf("with .vulndb: %s (notes %q)", got, r.Notes)
	}
}

func TestPlanProfileOverride(t *testing.T) {
	repo, _, upstream := testRepo(t)
	wt, _ := testWorktree(t, repo, upstream)
	r, err := plan(wt, upstream, "dagger", "offline")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Commands[2].Argv, " "); got != "dagger --progress plain call --profile offline test-e-2-e --allow-failure export --path results" {
		t.Errorf("overridden dagger call: %s", got)
	}
	r, err = plan(wt, upstream, "local", "offline")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Commands[1].Argv, " "); got != "go run ./ci/cmd/kgci test-e2e --images results/images --results results --profile offline" {
		t.Errorf("overridden local call: %s", got)
	}
	if _, err := plan(wt, upstream, "local", "airgapped"); err == nil || !strings.Contains(err.Error(), `unknown profile "airgapped"`) {
		t.Errorf("bad profile: %v", err)
	}
}
