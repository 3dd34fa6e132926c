// Package e2etest runs the end-to-end suite (`kgci test-e2e`): built images plus an
// ephemeral PostgreSQL in the production topology, the named checks, the reports, and
// removal of everything the run created. Its tests inject faults and verify that each one
// turns a named check red.
package e2etest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/baseimage"
	"github.com/kidney-genetics/kidney-genetics-db/ci/checks"
	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/publish"
	"github.com/kidney-genetics/kidney-genetics-db/ci/report"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// OfflinePostgresTag is where the offline postgres base is loaded into Docker.
const OfflinePostgresTag = "kidney-base/postgres:offline"

// Config of one run.
type Config struct {
	Docker      *dockerstack.Docker
	Profile     spec.Profile
	Tag         string // of kidney_genetics_backend / kidney_genetics_frontend
	ResultsDir  string
	ComposeFile string // docker-compose.prod.yml
	BudgetFile  string // budgets.yaml; empty skips size.budgets
	BuildJSON   string // kgci build's report; default ResultsDir/build.json
	// ImagesDir holds backend.tar and frontend.tar (and optionally postgres.tar): they
	// are loaded and tagged before the run, and their digests recorded as the tested
	// images, which `kgci publish` later requires. Empty: use the images already loaded.
	ImagesDir string
	// BaseCache is $KGCI_CACHE (offline bases under base/<name>).
	BaseCache string
	Checks    []string // names or groups; all when empty
	// StartupTimeout bounds each service's wait for healthy.
	StartupTimeout time.Duration
	// KeepOnFailure leaves a failed run's containers for inspection.
	KeepOnFailure bool
	RunID         string
	// Images overrides the image of a service (fault tests: derived images).
	Images   map[string]string
	Override map[string]dockerstack.Override
	// BeforeChecks runs after Up and before the checks (fault tests: stop the database).
	BeforeChecks func(ctx context.Context, s *dockerstack.Stack) error
	Out          io.Writer // progress; os.Stdout in the command
	// VulnDB, VulnIgnore and VulnFailOn configure supplychain.vulnerabilities (skipped
	// without a database).
	VulnDB     string
	VulnIgnore string
	VulnFailOn string
	// SBOMCache is where the SBOMs are cached ("" : checks.SBOMCacheDir, "none": no cache).
	SBOMCache string
}

// Result of a run.
type Result struct {
	Report  *report.Run
	Files   []string // reports and logs written
	Stack   *dockerstack.Stack
	DownErr error
	Kept    bool // containers left running (KeepOnFailure)
}

// Passed is true when every check passed or was skipped and the run cleaned up after itself.
func (r *Result) Passed() bool { return r.Report.Passed() && r.DownErr == nil }

// Result returns the named check's result.
func (r *Result) Check(name string) (checks.Result, bool) {
	for _, x := range r.Report.Results {
		if x.Name == name {
			return x, true
		}
	}
	return checks.Result{}, false
}

func (c *Config) defaults() error {
	if c.Docker == nil {
		c.Docker = dockerstack.FromEnv()
	}
	if c.Tag == "" {
		c.Tag = "latest"
	}
	if c.ResultsDir == "" {
		c.ResultsDir = "results"
	}
	if c.ComposeFile == "" {
		p, err := dockerstack.FindRepoFile(".", dockerstack.ProdComposeFile)
		if err != nil {
			return err
		}
		c.ComposeFile = p
	}
	if c.BaseCache == "" {
		c.BaseCache = os.Getenv("KGCI_CACHE")
		if c.BaseCache == "" {
			c.BaseCache = "/var/cache/kidney-genetics-ci"
		}
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.RunID == "" {
		c.RunID = dockerstack.NewRunID()
	}
	return nil
}

// ImageRefs returns the images a run uses for the profile and tag.
func ImageRefs(p spec.Profile, tag string) map[string]string {
	pg := spec.Bases(p)[spec.BasePostgres].Ref
	if p == spec.Offline {
		pg = OfflinePostgresTag
	}
	return map[string]string{
		dockerstack.Backend:  "kidney_genetics_backend:" + tag,
		dockerstack.Frontend: "kidney_genetics_frontend:" + tag,
		dockerstack.Postgres: pg,
	}
}

// EnsureImages checks that the app images are loaded and loads or pulls postgres.
func EnsureImages(ctx context.Context, c *Config, refs map[string]string) error {
	for _, svc := range []string{dockerstack.Backend, dockerstack.Frontend} {
		if _, err := c.Docker.InspectImage(ctx, refs[svc]); err != nil {
			return fmt.Errorf("image %s is not in the Docker engine (%v); build and load it first: kgci build --profile %s --load", refs[svc], err, c.Profile)
		}
	}
	pg := refs[dockerstack.Postgres]
	if _, err := c.Docker.InspectImage(ctx, pg); err == nil {
		return nil
	}
	if pg != OfflinePostgresTag {
		fmt.Fprintf(c.Out, "pulling %s\n", pg)
		_, err := c.Docker.Run(ctx, "pull", pg)
		return err
	}
	layout := filepath.Join(c.BaseCache, "base", string(spec.BasePostgres))
	tmp, err := os.MkdirTemp("", "kgci-pg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	archive := filepath.Join(tmp, "postgres.tar")
	if err := baseimage.WriteDockerArchive(layout, string(spec.BasePostgres), pg, archive); err != nil {
		return fmt.Errorf("offline postgres base: %w; make it with: scripts/make-base-images.sh postgres", err)
	}
	if err := c.Docker.Load(ctx, archive); err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "loaded %s from %s\n", pg, layout)
	return nil
}

// Tarballs is the order LoadImages reads an images directory in; postgres.tar is optional.
var Tarballs = []string{dockerstack.Backend, dockerstack.Frontend, dockerstack.Postgres}

// LoadImages loads dir/<service>.tar into the engine and tags it as refs[service]; an
// image the engine already has (same image ID) is only tagged. It returns the app
// images with the digests a push of the same tarballs yields (ci/publish computes
// both), so the results can prove what a later publish pushes.
func LoadImages(ctx context.Context, d *dockerstack.Docker, dir string, refs map[string]string, out io.Writer) ([]report.Image, error) {
	var tested []report.Image
	for _, svc := range Tarballs {
		path := filepath.Join(dir, svc+".tar")
		if _, err := os.Stat(path); err != nil {
			if svc == dockerstack.Postgres {
				continue
			}
			return nil, fmt.Errorf("--images %s: %v: it must hold backend.tar and frontend.tar from `kgci build --out %s` (postgres.tar is optional)", dir, err, dir)
		}
		tb, err := publish.DescribeTarball(path)
		if err != nil {
			return nil, err
		}
		if _, err := d.InspectImage(ctx, tb.ConfigDigest); err != nil {
			t0 := time.Now()
			if err := d.Load(ctx, path); err != nil {
				return nil, err
			}
			fmt.Fprintf(out, "loaded %s (%s) in %.1fs\n", path, short(tb.ConfigDigest), time.Since(t0).Seconds())
		}
		if _, err := d.Run(ctx, "tag", tb.ConfigDigest, refs[svc]); err != nil {
			return nil, err
		}
		if svc != dockerstack.Postgres {
			tested = append(tested, report.Image{Service: svc, Ref: refs[svc], ID: tb.ConfigDigest, Digest: tb.Digest, Tarball: path})
		}
	}
	return tested, nil
}

// loadedImages records images that were loaded beforehand (kgci build --load): their
// IDs are known, their push digests are not.
func loadedImages(ctx context.Context, d *dockerstack.Docker, refs map[string]string) ([]report.Image, error) {
	var out []report.Image
	for _, svc := range []string{dockerstack.Backend, dockerstack.Frontend} {
		img, err := d.InspectImage(ctx, refs[svc])
		if err != nil {
			return nil, err
		}
		out = append(out, report.Image{Service: svc, Ref: refs[svc], ID: img.ID})
	}
	return out, nil
}

func short(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}

// Run executes the suite. A returned error means the suite could not run at all (no engine,
// no images); check failures are in Result.Report. Whatever happens, everything the run
// created is removed before Run returns (unless KeepOnFailure and something failed), also
// when ctx is cancelled (Ctrl-C).
func Run(ctx context.Context, c Config) (*Result, error) {
	t0 := time.Now()
	if err := c.defaults(); err != nil {
		return nil, err
	}
	if _, err := c.Docker.Ping(ctx); err != nil {
		return nil, err
	}
	compose, err := dockerstack.LoadCompose(c.ComposeFile)
	if err != nil {
		return nil, err
	}
	list, err := checks.Select(checks.All(), c.Checks)
	if err != nil {
		return nil, err
	}
	refs := ImageRefs(c.Profile, c.Tag)
	var tested []report.Image
	if c.ImagesDir != "" {
		if tested, err = LoadImages(ctx, c.Docker, c.ImagesDir, refs, c.Out); err != nil {
			return nil, err
		}
	}
	if err := EnsureImages(ctx, &c, refs); err != nil {
		return nil, err
	}
	if tested == nil {
		if tested, err = loadedImages(ctx, c.Docker, refs); err != nil {
			return nil, err
		}
	}
	for k, v := range c.Images {
		refs[k] = v
	}

	// The image checks read the images out of the engine; that needs no running stack, so
	// it overlaps with the start (which mostly waits for initdb).
	env := &checks.Env{
		Runtime: "docker", ResultsDir: c.ResultsDir, BudgetFile: c.BudgetFile, Profile: string(c.Profile), BuildJSON: c.BuildJSON,
		Images: refs, DockerCLI: c.Docker, Compose: compose,
		VulnDB: c.VulnDB, VulnIgnore: c.VulnIgnore, VulnFailOn: c.VulnFailOn, SBOMCache: c.SBOMCache, RunCtx: ctx,
	}
	env.Tarballs = map[string]string{}
	for _, im := range tested {
		if _, replaced := c.Images[im.Service]; im.Tarball != "" && !replaced {
			env.Tarballs[im.Service] = im.Tarball
		}
	}
	env.Prefetch(list)
	defer env.WaitBackground()

	res := &Result{Report: &report.Run{Command: "test-e2e", Runtime: "docker", Profile: string(c.Profile), RunID: c.RunID, Started: t0, Images: tested}}
	if checks.NoContainers(list) && c.BeforeChecks == nil {
		// Sizes, files, SBOMs and vulnerabilities are read from the images, the policy
		// from the compose files: starting PostgreSQL and the services for them would
		// only cost the run its time.
		fmt.Fprintf(c.Out, "run %s: the selected checks read only the images and compose files; no containers started\n", c.RunID)
		return res, finish(ctx, c, res, env, list, nil, nil, t0)
	}
	fmt.Fprintf(c.Out, "run %s: starting postgres -> backend -> frontend (resources kgci-%s-*)\n", c.RunID, c.RunID)
	stack, newErr := dockerstack.New(dockerstack.Options{
		Docker: c.Docker, Compose: compose, RunID: c.RunID, Images: refs,
		StartupTimeout: c.StartupTimeout, Override: c.Override, Progress: c.Out,
		Started: func(s *dockerstack.Stack, svc string) {
			// Written before svc settles: the checks that read them wait for that.
			switch svc {
			case dockerstack.Backend:
				env.BackendURL = s.URL(svc)
			case dockerstack.Frontend:
				env.FrontendURL = s.URL(svc)
			}
			env.WarmUp(s, svc, list)
		},
	})
	res.Stack = stack
	defer func() {
		if res.Kept {
			return
		}
		res.DownErr = stack.Down(60 * time.Second)
		if res.DownErr != nil {
			fmt.Fprintf(c.Out, "cleanup: %v\n", res.DownErr)
		}
	}()
	// Before Down (defers run last first): a warm-up still starting the custom frontend
	// when the start was interrupted ends first, so Down finds its container. After the
	// checks ran, Run has closed everything already.
	defer env.Close()
	if stack == nil {
		return nil, newErr
	}
	env.Stack = stack
	started := make(chan error, 1)
	if newErr != nil {
		started <- newErr
	} else if c.BeforeChecks != nil {
		// The hook changes the stack before any check looks at it: all of it first.
		upErr := stack.Start(ctx)
		if upErr != nil && ctx.Err() != nil {
			return nil, fmt.Errorf("interrupted while starting the stack: %w", ctx.Err())
		}
		if err := c.BeforeChecks(ctx, stack); err != nil {
			return nil, fmt.Errorf("before checks: %w", err)
		}
		started <- upErr
	} else {
		// Each check starts when the services it uses are up (checks.Run waits for
		// them), while the later services still start.
		go func() { started <- stack.Start(ctx) }()
	}
	return res, finish(ctx, c, res, env, list, stack, started, t0)
}

// finish runs the checks and writes the reports; stack is nil when no containers were
// started (checks.NoContainers), else started delivers the stack's start's outcome.
func finish(ctx context.Context, c Config, res *Result, env *checks.Env, list []checks.Check, stack *dockerstack.Stack, started <-chan error, t0 time.Time) error {
	var mu sync.Mutex
	print := func(r checks.Result) {
		mu.Lock()
		defer mu.Unlock()
		PrintResult(c.Out, r)
	}
	var startup []checks.Result
	var upErr error
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		if stack == nil {
			return
		}
		upErr = <-started
		startup = checks.StartupResults(stack, upErr)
		for _, r := range startup {
			if r.Status == checks.Fail {
				print(r)
			}
		}
	}()
	ran := checks.Run(ctx, list, env, print)
	<-settled
	if upErr != nil && ctx.Err() != nil {
		return fmt.Errorf("interrupted while starting the stack: %w", ctx.Err())
	}
	res.Report.Results = append(startup, ran...)
	sc := env.SupplyChain()
	for i, im := range res.Report.Images {
		if x, ok := sc[im.Service]; ok {
			res.Report.Images[i].SBOMPackages, res.Report.Images[i].SBOM, res.Report.Images[i].Scan = x.Packages, x.Files, x.Scan
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintf(c.Out, "interrupted: %v\n", ctx.Err())
	}

	failed := !res.Report.Passed() || ctx.Err() != nil
	logs := map[string]string{}
	if failed && stack != nil {
		files, err := stack.SaveLogs(filepath.Join(c.ResultsDir, "logs"))
		if err != nil {
			fmt.Fprintf(c.Out, "saving logs: %v\n", err)
		}
		for _, f := range files {
			rel, _ := filepath.Rel(c.ResultsDir, f)
			res.Report.Logs = append(res.Report.Logs, rel)
			if b, err := os.ReadFile(f); err == nil {
				logs[strings.TrimSuffix(filepath.Base(f), ".log")] = dockerstack.Tail(string(b), 30)
			}
		}
		res.Files = append(res.Files, files...)
		if c.KeepOnFailure {
			res.Kept = true
			fmt.Fprintf(c.Out, "keeping the failed run's containers (--keep-on-failure); remove them with:\n  docker rm -f $(docker ps -aq --filter label=%s=%s); docker network rm $(docker network ls -q --filter label=%s=%s); docker volume rm $(docker volume ls -q --filter label=%s=%s)\n",
				dockerstack.LabelRun, c.RunID, dockerstack.LabelRun, c.RunID, dockerstack.LabelRun, c.RunID)
		}
	}
	res.Report.Duration = time.Since(t0)
	files, err := report.Write(c.ResultsDir, res.Report, func(svc string) string { return logs[svc] })
	res.Files = append(res.Files, files...)
	if err != nil {
		return fmt.Errorf("writing reports: %w", err)
	}
	if md, err := os.ReadFile(filepath.Join(c.ResultsDir, report.MarkdownFile)); err == nil {
		if err := report.AppendStepSummary(md); err != nil {
			fmt.Fprintf(c.Out, "GITHUB_STEP_SUMMARY: %v\n", err)
		}
	}
	return nil
}

// PrintResult prints one finished check on one line (plus evidence for failures).
func PrintResult(w io.Writer, r checks.Result) {
	mark := map[checks.Status]string{checks.Pass: "PASS", checks.Fail: "FAIL", checks.Skip: "SKIP"}[r.Status]
	fmt.Fprintf(w, "%s %-34s %6.2fs  %s\n", mark, r.Name, r.Duration.Seconds(), oneLine(r.Message, 220))
	if r.Status == checks.Fail && r.Details != "" {
		fmt.Fprintf(w, "     %s\n", strings.ReplaceAll(dockerstack.Tail(r.Details, 15), "\n", "\n     "))
	}
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n-3] + "..."
	}
	return s
}

// ErrFailed is returned by the command when a check failed.
var ErrFailed = errors.New("end-to-end checks failed")
