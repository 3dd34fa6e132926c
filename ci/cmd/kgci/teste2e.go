package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/checks"
	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/e2etest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
	"github.com/kidney-genetics/kidney-genetics-db/ci/supplyjson"
)

// VulnIgnoreFile is the repository's list of accepted vulnerabilities.
const VulnIgnoreFile = "vulnerability-ignore.yaml"

const testE2ESummary = "Run the built images with an ephemeral PostgreSQL in the production topology and check them end to end"

func init() {
	register(command{name: "test-e2e", summary: testE2ESummary, run: runTestE2E})
}

// testE2EFlags are test-e2e's parsed flags. The Dagger path runs the same command
// (ci/daggerrun.TestArgs); a test parses both command lines with parseTestE2E.
type testE2EFlags struct {
	profile                 spec.Profile
	results, tag, compose   string
	budgets, buildJSON      string
	images, dataRoot, runID string
	dockerHost              string
	checks                  []string
	keep, dockerd           bool
	vulnDB, vulnIgnore      string
	failOn                  string
	timeout, startup        time.Duration
}

func parseTestE2E(args []string) (*testE2EFlags, error) {
	fs := newFlags("test-e2e", testE2ESummary+`.

Uses kidney_genetics_backend:TAG and kidney_genetics_frontend:TAG: loaded from
--images DIR (the tarballs 'kgci build --out DIR' wrote; their digests are
recorded as the tested ones), or as loaded before by 'kgci build --load'. Plus
PostgreSQL (DIR/postgres.tar if present; else offline: the base made by
scripts/make-base-images.sh, loaded as `+e2etest.OfflinePostgresTag+`; upstream:
postgres:16-alpine). Containers, networks and the volume are named kgci-<run>-*
and removed at the end, also on failure and Ctrl-C. Writes junit.xml, summary.md,
results.json and, when something fails, logs/<service>.log to --results.
Exits 1 when a check fails.`)
	f := &testE2EFlags{}
	profile := fs.String("profile", "upstream", "offline or upstream: where the postgres image comes from, and which budgets apply")
	fs.StringVar(&f.results, "results", "results", "directory for the reports and logs")
	fs.StringVar(&f.tag, "tag", "latest", "tag of the images to test")
	fs.BoolVar(&f.keep, "keep-on-failure", false, "leave a failed run's containers running for inspection (prints how to remove them)")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Minute, "bound on the whole run, including loading the images and teardown")
	fs.DurationVar(&f.startup, "startup-timeout", 60*time.Second, "bound on each service becoming healthy")
	fs.StringVar(&f.compose, "compose", dockerstack.ProdComposeFile, "production compose file: networks, aliases and security options are taken from it")
	fs.StringVar(&f.budgets, "budgets", "budgets.yaml", "size budgets for size.budgets; 'none' skips that check")
	fs.StringVar(&f.buildJSON, "build-json", "", "kgci build's build.json, whose measured sizes size.budgets uses for the same images (default RESULTS/build.json)")
	fs.StringVar(&f.vulnDB, "vuln-db", os.Getenv("KGCI_VULN_DB"), "grype vulnerability database directory for supplychain.vulnerabilities (`kgci-supplychain vulndb update --dir DIR` downloads one; default $KGCI_VULN_DB; without one the check is skipped)")
	fs.StringVar(&f.vulnIgnore, "vuln-ignore", VulnIgnoreFile, "accepted vulnerabilities, each with a reason and an expiry date; 'none' for no file")
	failOn := fs.String("fail-on", "high", "lowest vulnerability severity that fails supplychain.vulnerabilities: negligible, low, medium, high or critical")
	only := fs.String("checks", "", "comma-separated checks or groups to run (default: all), e.g. health,websocket.upgrade; when all of them read only the images or the compose files (size, security.no_secrets, security.no_build_tools, supplychain, policy.compose) no containers are started")
	fs.StringVar(&f.dockerHost, "docker-host", "", "Docker engine (default: $DOCKER_HOST, else "+dockerstack.DefaultHost+" if present, else Docker's default)")
	fs.StringVar(&f.images, "images", "", "directory with backend.tar and frontend.tar (and optionally postgres.tar) to load and test; their digests go into results.json, and `kgci publish` pushes only tarballs tested this way (default: use the images already loaded)")
	fs.BoolVar(&f.dockerd, "dockerd", false, "start a private Docker engine for this run and stop it afterwards (a container without Docker, e.g. the Dagger pipeline's; needs root and full privileges)")
	fs.StringVar(&f.dataRoot, "dockerd-data-root", "/var/lib/docker", "--dockerd: where the private engine keeps images and containers (not on overlayfs: a volume or tmpfs)")
	fs.StringVar(&f.runID, "run-id", "", "identifies the run in resource names and reports (default: random)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	p, err := spec.ParseProfile(*profile)
	if err != nil {
		return nil, err
	}
	f.profile = p
	if f.failOn, err = supplyjson.CheckSeverity(*failOn); err != nil {
		return nil, fmt.Errorf("--fail-on: %w", err)
	}
	if f.vulnIgnore == "none" {
		f.vulnIgnore = ""
	}
	if f.dockerd && f.dockerHost != "" {
		return nil, fmt.Errorf("--dockerd starts its own engine; --docker-host names another one: give one of them")
	}
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			f.checks = append(f.checks, n)
		}
	}
	if _, err := checks.Select(checks.All(), f.checks); err != nil {
		return nil, err
	}
	return f, nil
}

func runTestE2E(ctx context.Context, args []string) (rerr error) {
	f, err := parseTestE2E(args)
	if err != nil {
		return err
	}
	d := dockerstack.FromEnv()
	if f.dockerHost != "" {
		d.Host = f.dockerHost
	}
	composePath := f.compose
	if _, err := os.Stat(composePath); err != nil {
		if composePath, err = dockerstack.FindRepoFile(".", f.compose); err != nil {
			return err
		}
	}
	budgetFile := f.budgets
	if budgetFile == "none" {
		budgetFile = ""
	}

	vulnIgnore := f.vulnIgnore
	if vulnIgnore != "" {
		if _, err := os.Stat(vulnIgnore); err != nil {
			if vulnIgnore, err = dockerstack.FindRepoFile(".", f.vulnIgnore); err != nil {
				return fmt.Errorf("--vuln-ignore: %w", err)
			}
		}
	}

	t0 := time.Now()
	if f.dockerd {
		daemon, err := dockerstack.StartDaemon(ctx, dockerstack.DaemonOptions{DataRoot: f.dataRoot})
		if err != nil {
			return err
		}
		fmt.Printf("private Docker engine up in %.1fs (storage driver %s, %s)\n", time.Since(t0).Seconds(), daemon.Driver, daemon.Docker.Host)
		defer func() {
			if err := daemon.Stop(30 * time.Second); err != nil {
				fmt.Fprintf(os.Stderr, "kgci test-e2e: %v\n", err)
			}
		}()
		d = daemon.Docker
		defer func() {
			// The engine's own log belongs with the others when the run failed.
			if rerr != nil {
				dir := filepath.Join(f.results, "logs")
				if os.MkdirAll(dir, 0o755) == nil {
					_ = os.WriteFile(filepath.Join(dir, "dockerd.log"), []byte(daemon.Log()), 0o644)
				}
			}
		}()
	}
	// The timeout covers the checks; teardown gets its own fresh context inside Run.
	rctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	res, err := e2etest.Run(rctx, e2etest.Config{
		Docker: d, Profile: f.profile, Tag: f.tag, ResultsDir: f.results, ComposeFile: composePath, ImagesDir: f.images,
		BudgetFile: budgetFile, BuildJSON: f.buildJSON, Checks: f.checks, StartupTimeout: f.startup, KeepOnFailure: f.keep,
		RunID: f.runID, Out: os.Stdout,
		VulnDB: f.vulnDB, VulnIgnore: vulnIgnore, VulnFailOn: f.failOn,
	})
	if err != nil {
		return err
	}
	pass, fail, skip := res.Report.Counts()
	fmt.Printf("\n%d passed, %d failed, %d skipped; total wall time %.1fs (run %s)\n", pass, fail, skip, time.Since(t0).Seconds(), res.Report.RunID)
	for _, f := range res.Files {
		fmt.Printf("  wrote %s\n", f)
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted; the run's containers were removed")
	case rctx.Err() != nil:
		return fmt.Errorf("the run took longer than --timeout %s", f.timeout)
	case res.DownErr != nil:
		return res.DownErr
	case fail > 0:
		return e2etest.ErrFailed
	}
	return nil
}
