package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/e2etest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

const testE2ESummary = "Run the built images with an ephemeral PostgreSQL in the production topology and check them end to end"

func init() {
	register(command{name: "test-e2e", summary: testE2ESummary, run: runTestE2E})
}

func runTestE2E(ctx context.Context, args []string) error {
	fs := newFlags("test-e2e", testE2ESummary+`.

Uses kidney_genetics_backend:TAG and kidney_genetics_frontend:TAG as loaded by
'kgci build --load', plus PostgreSQL (offline: the base made by
scripts/make-base-images.sh, loaded as `+e2etest.OfflinePostgresTag+`; upstream:
postgres:16-alpine). Containers, networks and the volume are named kgci-<run>-*
and removed at the end, also on failure and Ctrl-C. Writes junit.xml, summary.md,
results.json and, when something fails, logs/<service>.log to --results.
Exits 1 when a check fails.`)
	profile := fs.String("profile", "upstream", "offline or upstream: where the postgres image comes from, and which budgets apply")
	results := fs.String("results", "results", "directory for the reports and logs")
	tag := fs.String("tag", "latest", "tag of the images to test")
	keep := fs.Bool("keep-on-failure", false, "leave a failed run's containers running for inspection (prints how to remove them)")
	timeout := fs.Duration("timeout", 3*time.Minute, "bound on the whole run, including teardown")
	startup := fs.Duration("startup-timeout", 60*time.Second, "bound on each service becoming healthy")
	compose := fs.String("compose", dockerstack.ProdComposeFile, "production compose file: networks, aliases and security options are taken from it")
	budgets := fs.String("budgets", "budgets.yaml", "size budgets for size.budgets; 'none' skips that check")
	buildJSON := fs.String("build-json", "", "kgci build's build.json, whose measured sizes size.budgets uses for the same images (default RESULTS/build.json)")
	only := fs.String("checks", "", "comma-separated checks or groups to run (default: all), e.g. health,websocket.upgrade")
	dockerHost := fs.String("docker-host", "", "Docker engine (default: $DOCKER_HOST, else "+dockerstack.DefaultHost+" if present, else Docker's default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	p, err := spec.ParseProfile(*profile)
	if err != nil {
		return err
	}
	d := dockerstack.FromEnv()
	if *dockerHost != "" {
		d.Host = *dockerHost
	}
	composePath := *compose
	if _, err := os.Stat(composePath); err != nil {
		if composePath, err = dockerstack.FindRepoFile(".", *compose); err != nil {
			return err
		}
	}
	budgetFile := *budgets
	if budgetFile == "none" {
		budgetFile = ""
	}
	var names []string
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}

	t0 := time.Now()
	// The timeout covers the checks; teardown gets its own fresh context inside Run.
	rctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := e2etest.Run(rctx, e2etest.Config{
		Docker: d, Profile: p, Tag: *tag, ResultsDir: *results, ComposeFile: composePath,
		BudgetFile: budgetFile, BuildJSON: *buildJSON, Checks: names, StartupTimeout: *startup, KeepOnFailure: *keep, Out: os.Stdout,
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
		return fmt.Errorf("the run took longer than --timeout %s", *timeout)
	case res.DownErr != nil:
		return res.DownErr
	case fail > 0:
		return e2etest.ErrFailed
	}
	return nil
}
