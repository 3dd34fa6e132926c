package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/checks"
	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/e2etest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/report"
)

const checkSummary = "Run the URL-only end-to-end checks against an already running backend and frontend"

func init() {
	register(command{name: "check", summary: checkSummary, run: runCheck})
}

func runCheck(ctx context.Context, args []string) error {
	fs := newFlags("check", checkSummary+`.

Runs the checks that need nothing but HTTP/WebSocket access (health, websocket,
gzip) against a stack that is already running and published on this machine;
the ones that need the Docker runtime (exec, inspect, throwaway containers) are
'kgci test-e2e' only. Writes junit.xml, summary.md and results.json to
--results; exits 1 when a check fails.`)
	backendURL := fs.String("backend-url", "", "backend base URL, e.g. http://127.0.0.1:8001")
	frontendURL := fs.String("frontend-url", "", "frontend (nginx) base URL, e.g. http://127.0.0.1:8080")
	results := fs.String("results", "results", "directory for the reports")
	only := fs.String("checks", "", "comma-separated checks or groups to run (default: all URL-only checks)")
	timeout := fs.Duration("timeout", 2*time.Minute, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *backendURL == "" && *frontendURL == "" {
		return fmt.Errorf("give --backend-url and/or --frontend-url")
	}
	for _, u := range []*string{backendURL, frontendURL} {
		if *u == "" {
			continue
		}
		*u = strings.TrimRight(*u, "/")
		p, err := url.Parse(*u)
		if err != nil || p.Scheme != "http" || p.Host == "" {
			return fmt.Errorf("%q is not an http:// base URL", *u)
		}
		if !dockerstack.LoopbackOnly(p.Hostname()) {
			return fmt.Errorf("%s: the checker only targets 127.0.0.1 or localhost (the ports a stack published on this machine)", *u)
		}
	}
	var names []string
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	list, err := checks.Select(checks.URLOnly(), names)
	if err != nil {
		return err
	}
	t0 := time.Now()
	rctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	env := &checks.Env{Runtime: "docker", BackendURL: *backendURL, FrontendURL: *frontendURL, ResultsDir: *results}
	var mu sync.Mutex
	rs := checks.Run(rctx, list, env, func(r checks.Result) {
		mu.Lock()
		defer mu.Unlock()
		e2etest.PrintResult(os.Stdout, r)
	})
	run := &report.Run{Command: "check", Runtime: "docker", Started: t0, Duration: time.Since(t0), Results: rs}
	files, err := report.Write(*results, run, nil)
	if err != nil {
		return err
	}
	if md, err := os.ReadFile(filepath.Join(*results, report.MarkdownFile)); err == nil {
		_ = report.AppendStepSummary(md)
	}
	pass, fail, skip := run.Counts()
	fmt.Printf("\n%d passed, %d failed, %d skipped in %.1fs\n", pass, fail, skip, run.Duration.Seconds())
	for _, f := range files {
		fmt.Printf("  wrote %s\n", f)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted")
	}
	if fail > 0 {
		return e2etest.ErrFailed
	}
	return nil
}
