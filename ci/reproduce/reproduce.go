// Package reproduce reruns what CI ran for a commit. It reads the `dagger
// call` steps of .github/workflows/ci.yml at that commit and checks them
// against that commit's Dagger module (main.go), so that the workflow,
// `kgci reproduce` and main.go cannot silently disagree about which function
// CI runs with which arguments; then it runs them, or their kgci
// equivalents, in a temporary clone and shows the first failing check.
package reproduce

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/checks"
	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/report"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// WorkflowPath is the workflow whose dagger steps define "what CI ran".
const WorkflowPath = ".github/workflows/ci.yml"

// localEquivalent maps a Dagger function to the kgci commands that do the
// same work against BuildKit and Docker directly: the Dagger module runs
// these very commands (ci/daggerrun), so test-e-2-e is a build into
// results/images and test-e2e on those tarballs, as scripts/pipeline.sh.
var localEquivalent = map[string][][]string{
	"build":      {{"build", "--out", "results/images"}},
	"test-e-2-e": {{"build", "--out", "results/images"}, {"test-e2e", "--images", "results/images", "--results", "results"}},
}

// Options are what to reproduce and how.
type Options struct {
	Commit  string // sha, tag or branch
	Engine  string // dagger: the workflow's dagger calls; local: their kgci equivalents
	Results string // where to copy the run's results; empty: results/reproduce-<sha12> in the repository
	Profile string // overrides the workflow's --profile when set
	Keep    bool   // keep the clone afterwards
}

// Run reproduces CI for o.Commit of the repository around the working
// directory: it checks the commit out in a temporary clone, runs the
// workflow's dagger calls (or their local equivalents) there, keeps the
// results and prints the first failing check with hints for digging in.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) error {
	if o.Engine != "dagger" && o.Engine != "local" {
		return fmt.Errorf("engine %q: use dagger or local", o.Engine)
	}
	repo, err := gitOutput(ctx, ".", "rev-parse", "--show-toplevel")
	if err != nil {
		return fmt.Errorf("not inside a git repository: %w", err)
	}
	sha, err := gitOutput(ctx, repo, "rev-parse", "--verify", "--quiet", o.Commit+"^{commit}")
	if err != nil {
		return fmt.Errorf("commit %q not found here: `git fetch origin %s` first", o.Commit, o.Commit)
	}
	wt, cleanup, err := addWorktree(ctx, repo, sha)
	if err != nil {
		return err
	}
	if o.Keep {
		fmt.Fprintf(stdout, "checkout kept at %s (remove with: rm -rf %s)\n", wt, filepath.Dir(wt))
	} else {
		defer func() {
			if err := cleanup(); err != nil {
				fmt.Fprintf(stderr, "reproduce: %v\n", err)
			}
		}()
	}

	r, err := plan(wt, sha, o.Engine, o.Profile)
	if err != nil {
		return err
	}
	if o.Engine == "dagger" {
		if err := checkDaggerCLI(ctx, r.DaggerVersion, stderr); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "reproducing %s with engine %s in %s\n", sha[:12], o.Engine, wt)
	for _, n := range r.Notes {
		fmt.Fprintf(stdout, "note: %s\n", n)
	}
	failed, runErr := runCommands(ctx, r.Commands, stdout, stderr)

	dest := o.Results
	if dest == "" {
		dest = filepath.Join(repo, "results", "reproduce-"+sha[:12])
	}
	if err := copyResults(filepath.Join(wt, "results"), dest); err != nil {
		fmt.Fprintf(stderr, "reproduce: keeping results: %v\n", err)
	} else {
		fmt.Fprintf(stdout, "results of the run: %s\n", dest)
	}
	res, resErr := readResults(dest)
	if runErr == nil && resErr == nil && !res.Passed {
		// test-e-2-e --allow-failure exports failed results and succeeds,
		// as in CI, where the Verdict step fails the job instead.
		failed = len(r.Commands) - 1
		runErr = fmt.Errorf("end-to-end checks failed: %d of %d", res.Counts.Fail, len(res.Checks))
	}
	if runErr == nil {
		fmt.Fprintf(stdout, "reproduction of %s passed\n", sha[:12])
		return nil
	}
	if resErr != nil {
		fmt.Fprintf(stdout, "\nno check results to show (%v): the run failed before the checks; see the output above\n", resErr)
	} else {
		printFirstFailure(stdout, dest, res)
	}
	if failed >= 0 {
		printHints(stdout, r.Commands[failed], o.Engine, r.Terminals)
	}
	return runErr
}

// reproduction is what plan found at a commit.
type reproduction struct {
	Commands      []command
	DaggerVersion string   // what the workflow installs
	Terminals     []string // dagger calls that open a shell in a built image
	Notes         []string // what the reproduction leaves out, said before it runs
}

// command is one command line of a reproduction.
type command struct {
	Name string   // the workflow step it stands for
	Dir  string   // the clone
	Argv []string // exact command line
	Call *Call
}

// plan reads the workflow and the Dagger module at the clone's commit
// and returns the commands to run for engine.
func plan(wt, sha, engine, profileOverride string) (*reproduction, error) {
	src, err := os.ReadFile(filepath.Join(wt, WorkflowPath))
	if err != nil {
		return nil, fmt.Errorf("commit %s has no %s: nothing says what CI ran for it", sha[:12], WorkflowPath)
	}
	dsteps, err := DaggerSteps(src)
	if err != nil {
		return nil, fmt.Errorf("%s at %s: %w", WorkflowPath, sha[:12], err)
	}
	mod, err := ParseModule(wt)
	if err != nil {
		return nil, fmt.Errorf("the Dagger module at %s: %w", sha[:12], err)
	}
	version := ""

	var out []command
	var notes []string
	seen := map[string]bool{}
	for _, ds := range dsteps {
		if ds.Verb != "call" {
			return nil, fmt.Errorf("%s step %q uses `dagger %s`; only `dagger call` steps can be reproduced", WorkflowPath, ds.Name, ds.Verb)
		}
		// Runner context (github.actor, secrets) only matters to steps
		// that are not reproduced; any other step using it is refused.
		var runnerOnly []string
		args, _ := Expand(ds.Args, func(e string) (string, error) {
			if e == "github.sha" {
				return sha, nil
			}
			runnerOnly = append(runnerOnly, e)
			return "RUNNER-VALUE", nil
		})
		words, err := Split(args)
		if err != nil {
			return nil, fmt.Errorf("step %q: %w", ds.Name, err)
		}
		call, err := mod.ParseCall(words)
		if err != nil {
			return nil, fmt.Errorf("step %q of %s does not match the Dagger module at %s: %w", ds.Name, WorkflowPath, sha[:12], err)
		}
		if profileOverride != "" {
			if words, err = overrideProfile(words, call, profileOverride); err != nil {
				return nil, err
			}
			if call, err = mod.ParseCall(words); err != nil {
				return nil, err
			}
		}
		if call.Function() == "publish" {
			continue // reproducing must never push images
		}
		// CI downloads the vulnerability database in a step of its own (it needs the
		// internet and takes minutes); without that directory the check is skipped.
		if dir, ok := call.ConstructorFlag("vuln-db"); ok && !isDir(filepath.Join(wt, dir)) {
			if words, err = dropConstructorFlag(words, call, "vuln-db"); err != nil {
				return nil, err
			}
			if call, err = mod.ParseCall(words); err != nil {
				return nil, err
			}
			note := fmt.Sprintf("step %q: CI scanned the images against a fresh vulnerability database (--vuln-db %s); this reproduction skips supplychain.vulnerabilities. To include it: go run -C ci/supplychain ./cmd/kgci-supplychain vulndb update --dir %s", ds.Name, dir, filepath.Join(wt, dir))
			if !slices.Contains(notes, note) {
				notes = append(notes, note)
			}
		}
		if len(runnerOnly) > 0 {
			return nil, fmt.Errorf("step %q uses ${{ %s }}, which has no value outside GitHub Actions", ds.Name, runnerOnly[0])
		}
		if ds.Version != "" {
			version = ds.Version
		}
		if engine == "dagger" {
			argv := []string{"dagger", "--progress", "plain", "call"}
			if ds.Module != "" {
				argv = append(argv, "-m", ds.Module)
			}
			out = append(out, command{Name: ds.Name, Dir: wt, Argv: append(argv, words...), Call: call})
			continue
		}
		local, ok := localEquivalent[call.Function()]
		if !ok {
			return nil, fmt.Errorf("step %q calls %s, which has no local equivalent: use --engine dagger", ds.Name, call.Function())
		}
		// Unset, the constructor's own default applies, as under dagger.
		profile, ok := call.ConstructorFlag("profile")
		if p, found := mod.Constructor.Param("profile"); !ok && found {
			profile = p.Default
		}
		for _, l := range local {
			key := strings.Join(l, " ")
			if seen[key] {
				continue
			}
			seen[key] = true
			argv := append([]string{"go", "run", "./ci/cmd/kgci"}, l...)
			if profile != "" {
				argv = append(argv, "--profile", profile)
			}
			out = append(out, command{Name: ds.Name, Dir: wt, Argv: argv, Call: call})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s at %s has no dagger call step other than publishing: nothing to reproduce", WorkflowPath, sha[:12])
	}
	return &reproduction{Commands: out, DaggerVersion: version, Terminals: terminals(mod, out[0].Call), Notes: notes}, nil
}

// terminals lists `dagger call ... terminal` commands that open a shell in
// each container the module returns without required arguments (e.g.
// build backend), with the constructor flags CI used.
func terminals(mod *Module, first *Call) []string {
	ctor := []string{"dagger", "call"}
	for _, f := range first.Constructor {
		ctor = append(ctor, "--"+f.Name, f.Value)
	}
	var out []string
	for _, name := range mod.FunctionNames() {
		fn := mod.Functions[name]
		if hasRequired(fn) {
			continue
		}
		obj := mod.Objects[strings.TrimPrefix(fn.Returns, "*")]
		var fields []string
		for n, f := range obj {
			if f.Returns == "*dagger.Container" && !hasRequired(f) {
				fields = append(fields, n)
			}
		}
		slices.Sort(fields)
		for _, f := range fields {
			out = append(out, dockerstack.ShellQuote(append(slices.Clone(ctor), name, f, "terminal")...))
		}
	}
	return out
}

func hasRequired(fn *Function) bool {
	for _, p := range fn.Params {
		if !p.Optional {
			return true
		}
	}
	return false
}

// overrideProfile replaces (or adds) the constructor's --profile.
func overrideProfile(words []string, call *Call, profile string) ([]string, error) {
	if _, err := spec.ParseProfile(profile); err != nil {
		return nil, err
	}
	var out []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == call.Function() {
			// The constructor flags end here: put ours last among them.
			out = append(out, "--profile", profile)
			return append(out, words[i:]...), nil
		}
		if w == "--profile" {
			i++
			continue
		}
		if strings.HasPrefix(w, "--profile=") {
			continue
		}
		out = append(out, w)
	}
	return nil, fmt.Errorf("no function in %q", strings.Join(words, " "))
}

// dropConstructorFlag removes a constructor flag (--name V or --name=V).
func dropConstructorFlag(words []string, call *Call, name string) ([]string, error) {
	var out []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == call.Function() {
			return append(out, words[i:]...), nil
		}
		if w == "--"+name {
			i++
			continue
		}
		if strings.HasPrefix(w, "--"+name+"=") {
			continue
		}
		out = append(out, w)
	}
	return nil, fmt.Errorf("no function in %q", strings.Join(words, " "))
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// checkDaggerCLI fails with install instructions when dagger is missing
// and warns when its version differs from the one CI used.
func checkDaggerCLI(ctx context.Context, want string, stderr io.Writer) error {
	if want == "" || want == "latest" {
		want = "latest"
	} else if !strings.HasPrefix(want, "v") {
		want = "v" + want
	}
	if _, err := exec.LookPath("dagger"); err != nil {
		return fmt.Errorf("the dagger CLI is not on PATH. Install the version CI uses (%s):\n"+
			"  curl -fsSL https://dl.dagger.io/dagger/install.sh | BIN_DIR=$HOME/.local/bin DAGGER_VERSION=%s sh\n"+
			"It needs a container runtime (Docker or Podman). Or rerun with --engine local to use BuildKit and Docker directly", want, strings.TrimPrefix(want, "latest"))
	}
	out, err := exec.CommandContext(ctx, "dagger", "version").Output()
	if err == nil && want != "latest" && !strings.Contains(string(out), want+" ") {
		fmt.Fprintf(stderr, "warning: CI used dagger %s, this is %s", want, out)
	}
	return nil
}

// runCommands runs each command in its own process group, so that Ctrl-C
// reaches everything it started (go run's child, dagger's session) and each
// can clean up; a command that ignores SIGTERM is killed after 30 s.
// It returns the index of the command that failed, or -1.
func runCommands(ctx context.Context, cmds []command, stdout, stderr io.Writer) (int, error) {
	for i, s := range cmds {
		fmt.Fprintf(stdout, "\n==> %s: %s\n", s.Name, dockerstack.ShellQuote(s.Argv...))
		cmd := exec.CommandContext(ctx, s.Argv[0], s.Argv[1:]...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = s.Dir, stdout, stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
		cmd.WaitDelay = 30 * time.Second
		if err := cmd.Run(); err != nil {
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			return i, fmt.Errorf("step %q failed: %s: %w", s.Name, dockerstack.ShellQuote(s.Argv...), err)
		}
	}
	return -1, nil
}

// addWorktree checks sha out in a clone of repo under a new temporary
// directory; cleanup removes it. A clone, not a `git worktree`: Dagger
// (v0.20) loads the module's contextual git from the directory's own .git
// and fails with "not a git repository" on a worktree, whose .git is a file
// pointing back into repo. A local clone hardlinks the objects, so it costs
// about what a worktree does.
func addWorktree(ctx context.Context, repo, sha string) (string, func() error, error) {
	tmp, err := os.MkdirTemp("", "kgci-reproduce-")
	if err != nil {
		return "", nil, err
	}
	wt := filepath.Join(tmp, "src")
	cleanup := func() error {
		if err := os.RemoveAll(tmp); err != nil {
			return fmt.Errorf("remove %s: %w", tmp, err)
		}
		return nil
	}
	if _, err := gitOutput(ctx, repo, "clone", "--quiet", "--no-checkout", repo, wt); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("clone for %s: %w", sha, err)
	}
	if _, err := gitOutput(ctx, wt, "checkout", "--quiet", "--detach", sha); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("check out %s: %w", sha, err)
	}
	return wt, cleanup, nil
}

func gitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// copyResults copies the run's results out of the clone before it is
// removed.
func copyResults(src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("the run wrote no results directory: %w", err)
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return os.CopyFS(dst, os.DirFS(src))
}

// printHints says how to dig into the failed command with the same engine.
func printHints(w io.Writer, failed command, engine string, terminals []string) {
	fmt.Fprintln(w, "\nTo dig in:")
	if engine == "local" {
		fmt.Fprintln(w, "  - service logs: logs/<service>.log in the results directory above")
		fmt.Fprintf(w, "  - rerun the failed command in a checkout of that commit:\n      %s\n", dockerstack.ShellQuote(failed.Argv...))
		fmt.Fprintln(w, "  - with Dagger installed, --engine dagger reruns the exact dagger calls")
		return
	}
	// -i opens a terminal in the container of the failing exec; with
	// --allow-failure nothing fails, so it is dropped here.
	args := slices.DeleteFunc(slices.Clone(failed.Argv[4:]), func(a string) bool { return a == "--allow-failure" })
	fmt.Fprintf(w, "  - open a terminal in the container where it fails:\n      %s\n", dockerstack.ShellQuote(append([]string{"dagger", "call", "-i"}, args...)...))
	if len(terminals) > 0 {
		fmt.Fprintln(w, "  - a shell in a built image:")
		for _, t := range terminals {
			fmt.Fprintf(w, "      %s\n", t)
		}
	}
	fmt.Fprintln(w, "  - list the module's functions: dagger functions; more detail: add --debug")
}

// results.json as ci/report writes it (schema kgci.e2e.results/v1); only
// the fields a reader of a failure needs.
type e2eResults struct {
	Schema string `json:"schema"`
	Passed bool   `json:"passed"`
	Counts struct {
		Pass, Fail, Skip int
	} `json:"counts"`
	Checks []struct {
		Name    string `json:"name"`
		Status  string `json:"status"`
		Message string `json:"message"`
		Details string `json:"details"`
	} `json:"checks"`
	Logs []string `json:"logs"`
}

// excerptLines bounds what is printed from details and logs: enough to see
// the error, short enough to read in a terminal.
const excerptLines = 30

// readResults reads dir/results.json.
func readResults(dir string) (*e2eResults, error) {
	b, err := os.ReadFile(filepath.Join(dir, report.JSONFile))
	if err != nil {
		return nil, err
	}
	var r e2eResults
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", report.JSONFile, err)
	}
	if r.Schema != report.SchemaVersion {
		return nil, fmt.Errorf("%s has schema %q; this kgci reads %q", report.JSONFile, r.Schema, report.SchemaVersion)
	}
	return &r, nil
}

// printFirstFailure prints the first failing check with its evidence and
// the tail of the log of the service it names; dir holds the logs.
func printFirstFailure(w io.Writer, dir string, r *e2eResults) {
	fmt.Fprintf(w, "\nchecks: %d passed, %d failed, %d skipped\n", r.Counts.Pass, r.Counts.Fail, r.Counts.Skip)
	for _, c := range r.Checks {
		if c.Status != string(checks.Fail) {
			continue
		}
		fmt.Fprintf(w, "first failing check: %s\n  %s\n", c.Name, c.Message)
		if d := strings.TrimSpace(c.Details); d != "" {
			fmt.Fprintf(w, "evidence:\n%s\n", indent(tail(d, excerptLines)))
		}
		for _, l := range r.Logs {
			svc := strings.TrimSuffix(filepath.Base(l), ".log")
			if !strings.Contains(c.Name, svc) {
				continue
			}
			if lb, err := os.ReadFile(filepath.Join(dir, l)); err == nil {
				fmt.Fprintf(w, "%s (last %d lines):\n%s\n", l, excerptLines, indent(tail(string(lb), excerptLines)))
			}
		}
		if len(r.Logs) > 0 {
			fmt.Fprintf(w, "all logs: %s\n", strings.Join(r.Logs, ", "))
		}
		return
	}
	fmt.Fprintln(w, "no check failed; the failure is outside the checks (see the output above)")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }
