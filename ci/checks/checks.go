// Package checks holds the named end-to-end checks of the running stack. Each check has a
// stable name (used in reports, CI summaries and fault tests), runs on its own, and says
// in its message what to fix when it fails.
//
// Two kinds exist: checks that need only the frontend and backend URLs (`kgci check`
// runs those against a stack that is already up), and checks that need the Docker
// runtime of `kgci test-e2e` (inspect, exec, throwaway containers). The Dagger path
// runs `kgci test-e2e` itself, so it runs both kinds.
package checks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

// Status of a check.
type Status string

const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Outcome is what a check's Run returns.
type Outcome struct {
	Status  Status
	Message string // one or two sentences; on failure, what is wrong and what to change
	Details string // evidence: command output, log tail, response body
	// Files the check left in the results directory (screenshots), relative to it.
	Files []string
}

func passf(format string, a ...any) Outcome {
	return Outcome{Status: Pass, Message: fmt.Sprintf(format, a...)}
}

func failf(format string, a ...any) Outcome {
	return Outcome{Status: Fail, Message: fmt.Sprintf(format, a...)}
}

func skipf(format string, a ...any) Outcome {
	return Outcome{Status: Skip, Message: fmt.Sprintf(format, a...)}
}

func (o Outcome) with(details string) Outcome {
	o.Details = strings.TrimSpace(details)
	return o
}

// Result is one check's result, as reported.
type Result struct {
	Name   string
	Group  string
	Status Status
	// Start is when the check began (a startup.* result: when the service could start);
	// zero when unknown.
	Start    time.Time
	Duration time.Duration
	Message  string
	Details  string
	Files    []string // relative to the results directory
}

// Check is one named check.
type Check struct {
	Name string
	// Docker is true for checks that need the Docker runtime of `kgci test-e2e`.
	Docker bool
	// Needs lists services that must be up and healthy (with a Docker stack).
	Needs []string
	// URL names the base URL the check talks to (backend or frontend); URL-only runs
	// skip the check when that URL was not given.
	URL string
	// NeedsRunning lists services whose container must merely be running.
	NeedsRunning []string
	// Destructive checks disturb the stack (stop the database); they run last, one at a
	// time, after all others have finished.
	Destructive bool
	// Slow checks are started first, so that they overlap with the quick ones.
	Slow bool
	// StartsContainers: the check runs containers of its own. Besides its services it
	// waits until every service of the stack has been started (dockerstack's Launched),
	// so that its containers do not slow the stack's own starts.
	StartsContainers bool
	Timeout          time.Duration
	// usesImages: the check reads the image files (shared, prefetchable).
	usesImages bool
	// usesSBOMs: the check reads the images' SBOMs (made once, prefetchable).
	usesSBOMs bool
	// readsCompose: the check reads the compose files the stack is made from (Env.Compose),
	// not the stack.
	readsCompose bool
	// usesBrowser and usesCustom: the check needs the run's Chromium, or the frontend
	// started with customEnv (both shared, and started early by WarmUp).
	usesBrowser bool
	usesCustom  bool
	Run         func(ctx context.Context, e *Env) Outcome
}

// Group is the part of the name before the first dot ("health" for health.frontend).
func Group(name string) string {
	g, _, _ := strings.Cut(name, ".")
	return g
}

// Env is what checks run against.
type Env struct {
	// Runtime is "docker": kgci test-e2e, or kgci check against published ports. (The
	// Dagger path runs kgci test-e2e inside Dagger, on a Docker engine of its own.)
	Runtime     string
	BackendURL  string // http://127.0.0.1:PORT, no trailing slash
	FrontendURL string
	// Stack is the running Docker stack; nil for URL-only runs.
	Stack *dockerstack.Stack
	// ResultsDir holds build.json (from `kgci build`) and receives the reports.
	ResultsDir string
	// BudgetFile is budgets.yaml (size.budgets); Profile selects its section.
	BudgetFile string
	Profile    string
	// BuildJSON is `kgci build`'s report (measured sizes); default ResultsDir/build.json.
	BuildJSON string
	// Images and DockerCLI let image checks start before the stack is up (Prefetch).
	Images    map[string]string
	DockerCLI *dockerstack.Docker
	// Compose is the compose file (with its test overlay beside it) the stack is, or
	// would be, made from.
	Compose *dockerstack.Compose

	httpOnce sync.Once
	http     *http.Client
	images   imageCache
	browser  browser
	custom   sharedVariant
	warm     warmUps
	sboms    sbomCache
	// Tarballs are the tested docker-archives by service, when test-e2e loaded them
	// (--images): the SBOM is made from them rather than from a fresh docker save.
	Tarballs map[string]string
	// VulnDB is the grype database directory supplychain.vulnerabilities scans against
	// (the check is skipped without one), VulnIgnore its ignore file (may be empty) and
	// VulnFailOn the lowest severity that fails it.
	VulnDB     string
	VulnIgnore string
	VulnFailOn string
	// SBOMCache is where kgci-supplychain caches SBOMs by image and tool binary
	// ("": SBOMCacheDir, "none": no cache).
	SBOMCache string
	// RunCtx is the whole run's context: work shared between checks (the SBOMs)
	// outlives any one check, but not the run.
	RunCtx context.Context
}

// HTTP is the client every check uses; it refuses any address the run does not own.
func (e *Env) HTTP() *http.Client {
	e.httpOnce.Do(func() { e.http = newGuardedClient(e) })
	return e.http
}

// Docker returns the engine: DockerCLI (the stack's own, in test-e2e), else the stack's.
// DockerCLI first: the image reads start before the stack is handed to the Env.
func (e *Env) Docker() *dockerstack.Docker {
	if e.DockerCLI != nil {
		return e.DockerCLI
	}
	return e.Stack.D
}

// image is the reference of the service's image under test.
func (e *Env) image(svc string) string {
	if ref, ok := e.Images[svc]; ok {
		return ref
	}
	return e.Stack.Images[svc]
}

// Prefetch starts reading the images for the image checks among list right away, so that
// streaming them out of the engine overlaps with the stack's start instead of the checks.
func (e *Env) Prefetch(list []Check) {
	images, sboms := false, false
	for _, c := range list {
		images = images || c.usesImages
		sboms = sboms || c.usesSBOMs
	}
	for _, svc := range []string{dockerstack.Backend, dockerstack.Frontend} {
		if images {
			go e.imageLoad(svc)
		}
		if sboms {
			e.sboms.wg.Add(1)
			go func() {
				defer e.sboms.wg.Done()
				e.sbomOf(svc)
			}()
		}
	}
}

// noContainers: the check reads the images under test or the compose files, nothing
// that runs.
func (c Check) noContainers() bool { return c.usesImages || c.usesSBOMs || c.readsCompose }

// NoContainers reports whether every check of list reads only the images (sizes, files,
// SBOMs, vulnerabilities) or the compose files: test-e2e then starts no containers.
func NoContainers(list []Check) bool {
	for _, c := range list {
		if !c.noContainers() {
			return false
		}
	}
	return len(list) > 0
}

// All returns every check, in report order.
func All() []Check {
	return []Check{
		policyCompose,
		policyRuntime,
		healthBackendDirect, healthThroughNginx, healthFrontend,
		healthcheckImage("backend"), healthcheckImage("frontend"),
		websocketUpgrade, websocketPlainAPI,
		envInjection,
		browserGenes, browserDeepLink, browserLiveUpdate, browserCustomURLs,
		securityUsers, securityCapabilities, securityDBIsolation, securityNoSecrets, securityNoBuildTools,
		sizeBudgets, gzipAssets,
		supplyChainSBOM, supplyChainVulnerabilities,
		healthDatabaseDown,
	}
}

// URLOnly returns the checks that need nothing but URLs (and results/), for `kgci check`.
func URLOnly() []Check {
	var l []Check
	for _, c := range All() {
		if !c.Docker {
			l = append(l, c)
		}
	}
	return l
}

// Select keeps the checks whose name or group is listed; all when names is empty.
func Select(list []Check, names []string) ([]Check, error) {
	if len(names) == 0 {
		return list, nil
	}
	var out []Check
	used := map[string]bool{}
	for _, c := range list {
		picked := false
		for _, n := range names {
			if c.Name == n || Group(c.Name) == n {
				used[n] = true
				picked = true
			}
		}
		if picked {
			out = append(out, c)
		}
	}
	for _, n := range names {
		if !used[n] {
			known := make([]string, 0, len(list))
			for _, c := range list {
				known = append(known, c.Name)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("no check or group named %q; known checks: %s", n, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// Parallelism bounds concurrently running checks: they exec into containers and start
// throwaway ones on a 2-core machine.
const Parallelism = 4

// Run runs the checks: independent ones in parallel, destructive ones afterwards one at a
// time. done is called as each check finishes (from several goroutines, serialised).
// Results come back in the order of list.
func Run(ctx context.Context, list []Check, e *Env, done func(Result)) []Result {
	results := make([]Result, len(list))
	// One Chromium serves every browser check of the run; nothing of it outlives the run.
	defer e.Close()
	var mu sync.Mutex
	report := func(i int, r Result) {
		mu.Lock()
		defer mu.Unlock()
		results[i] = r
		if done != nil {
			done(r)
		}
	}
	// A check waits for its part of the stack outside the limit, so that checks of the
	// services already up fill the slots while the others still start. Checks that read
	// only the images and compose files take no slot: their work runs in the background
	// (Prefetch) from the start, and they would hold slots while waiting for it.
	slots := make(chan struct{}, Parallelism)
	var wg sync.WaitGroup
	for _, slow := range []bool{true, false} {
		for i, c := range list {
			if c.Destructive || c.Slow != slow {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if !e.artifactsOnly(c) {
					e.awaitStack(ctx, c)
					slots <- struct{}{}
					defer func() { <-slots }()
				}
				report(i, runOne(ctx, c, e))
			}()
		}
	}
	wg.Wait()
	for i, c := range list {
		if c.Destructive {
			e.awaitStack(ctx, c)
			report(i, runOne(ctx, c, e))
		}
	}
	return results
}

// artifactsOnly: the check reads the images or compose files and no service.
func (e *Env) artifactsOnly(c Check) bool {
	return e.withoutStack(c) && !c.usesServices()
}

// awaitStack returns once every service the check uses has settled (healthy, or given up
// on: the precondition then skips the check) or ctx ended. A check that uses the stack
// without naming services waits for all of them.
func (e *Env) awaitStack(ctx context.Context, c Check) {
	if e.Stack == nil || e.artifactsOnly(c) {
		return
	}
	svcs := append(append([]string{}, c.Needs...), c.NeedsRunning...)
	if c.URL != "" {
		svcs = append(svcs, c.URL)
	}
	if len(svcs) == 0 {
		svcs = dockerstack.Order
	}
	for _, svc := range svcs {
		select {
		case <-e.Stack.Settled(svc):
		case <-ctx.Done():
			return
		}
	}
	if c.StartsContainers {
		for _, svc := range dockerstack.Order {
			select {
			case <-e.Stack.Launched(svc):
			case <-ctx.Done():
				return
			}
		}
	}
}

func (c Check) usesServices() bool {
	return len(c.Needs) > 0 || len(c.NeedsRunning) > 0 || c.URL != ""
}

func runOne(ctx context.Context, c Check, e *Env) (r Result) {
	t0 := time.Now()
	r = Result{Name: c.Name, Group: Group(c.Name), Start: t0}
	defer func() {
		if p := recover(); p != nil {
			r.Status, r.Message, r.Details = Fail, fmt.Sprintf("check crashed: %v (a bug in ci/checks)", p), string(debug.Stack())
		}
		r.Duration = time.Since(t0)
	}()
	if o, skip := e.precondition(ctx, c); skip {
		r.Status, r.Message = o.Status, o.Message
		return r
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	o := c.Run(cctx, e)
	if o.Status == "" {
		o.Status = Fail
	}
	if o.Status == Fail && cctx.Err() != nil && ctx.Err() == nil {
		o.Message = fmt.Sprintf("timed out after %s: %s", timeout, o.Message)
	} else if o.Status == Fail && ctx.Err() != nil {
		o.Message = fmt.Sprintf("interrupted: %s", o.Message)
	}
	r.Status, r.Message, r.Details, r.Files = o.Status, o.Message, o.Details, o.Files
	return r
}

// withoutStack: c can run before (or instead of) the stack, with what e has.
func (e *Env) withoutStack(c Check) bool {
	return (c.usesImages || c.usesSBOMs) && e.DockerCLI != nil || c.readsCompose && e.Compose != nil
}

// precondition decides whether a check can run at all; when it cannot, the returned
// outcome (skip) says why and where to look.
func (e *Env) precondition(ctx context.Context, c Check) (Outcome, bool) {
	if c.Docker && e.Stack == nil && !e.withoutStack(c) {
		return skipf("needs the Docker runtime (kgci test-e2e); this is a URL-only run (kgci check)"), true
	}
	if e.Stack == nil {
		switch {
		case c.URL == dockerstack.Backend && e.BackendURL == "":
			return skipf("needs --backend-url"), true
		case c.URL == dockerstack.Frontend && e.FrontendURL == "":
			return skipf("needs --frontend-url"), true
		}
	}
	for _, svc := range c.Needs {
		if e.Stack == nil {
			continue
		}
		if st, ok := e.Stack.StartupOf(svc); !ok || !st.Healthy {
			return skipf("not run: %s is not up and healthy (see startup.%s)", svc, svc), true
		}
	}
	for _, svc := range c.NeedsRunning {
		if e.Stack == nil {
			continue
		}
		name, ok := e.Stack.Container(svc)
		if !ok {
			return skipf("not run: the %s container was never created (see startup.%s)", svc, svc), true
		}
		info, err := e.Stack.D.Inspect(ctx, name)
		if err != nil || !info.State.Running {
			return skipf("not run: the %s container is not running (see startup.%s)", svc, svc), true
		}
	}
	return Outcome{}, false
}

// StartupResults turns the stack's start into results named startup.<service>, so a service
// that never became healthy is a named red line in every report.
func StartupResults(s *dockerstack.Stack, upErr error) []Result {
	var out []Result
	for _, svc := range dockerstack.Order {
		r := Result{Name: "startup." + svc, Group: "startup"}
		st, ok := s.Startup[svc]
		switch {
		case ok && st.Healthy:
			r.Status, r.Start, r.Duration = Pass, st.Started, st.Duration
			r.Message = fmt.Sprintf("healthy after %.1fs (container %s)", st.Duration.Seconds(), s.Containers[svc])
		case ok && st.Err != nil:
			r.Status, r.Start, r.Duration = Fail, st.Started, st.Duration
			r.Message = st.Err.Error() + startupHint(svc, st.Err.Kind)
			r.Details = st.Err.Details()
		case upErr != nil && !startedBefore(s, svc):
			var se *dockerstack.StartError
			if firstUnstarted(s) == svc && !errors.As(upErr, &se) {
				r.Status, r.Message = Fail, fmt.Sprintf("could not start %s: %v", svc, upErr)
			} else {
				r.Status, r.Message = Skip, "not started: an earlier service did not become healthy"
			}
		default:
			r.Status, r.Message = Fail, "no startup record (a bug in ci/dockerstack)"
		}
		out = append(out, r)
	}
	return out
}

func startedBefore(s *dockerstack.Stack, svc string) bool {
	_, ok := s.Startup[svc]
	return ok
}

func firstUnstarted(s *dockerstack.Stack) string {
	for _, svc := range dockerstack.Order {
		if _, ok := s.Startup[svc]; !ok {
			return svc
		}
	}
	return ""
}

func startupHint(svc, kind string) string {
	switch {
	case kind == dockerstack.ProbeFails:
		return ". Compare the HEALTHCHECK (ci/spec/images.go) with what the service serves; healthcheck." + "image_" + svc + " runs the probe by hand"
	case svc == dockerstack.Backend:
		return ". The container log below says why: a configuration error (DATABASE_URL, LOG_LEVEL) is reported there by name; an unreachable database ends startup after DB_CONNECT_TIMEOUT"
	case svc == dockerstack.Frontend:
		return ". The container log below says why: nginx names the config line it rejects; 'host not found in upstream' means the backend alias kidney_genetics_backend does not resolve"
	case svc == dockerstack.Postgres:
		return ". The container log below says why (initdb or configuration errors)"
	}
	return ""
}
