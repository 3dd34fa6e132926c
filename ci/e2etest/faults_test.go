package e2etest

// Fault tests against the real engine and the real images: each fault must turn a NAMED
// check red with a message that says what is wrong, and leave nothing of its run behind.
// They run in parallel (go test -parallel, 2 in scripts/test.sh): every run has its own
// run ID, containers, networks and ports, and most of a run is waiting for health checks.
//
// They need a Docker engine and the images loaded by `kgci build --load`, and run only with
// KGCI_E2E=1 (scripts/test.sh sets it after the pipeline). With KGCI_E2E=1 a missing
// engine or image is a failure, never a skip.
//
//	KGCI_E2E=1 go test -count=1 -timeout 20m ./ci/e2etest/...
//
// KGCI_E2E_PROFILE (default offline) and KGCI_E2E_TAG (default latest) select the images.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/checks"
	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/report"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

type env struct {
	d       *dockerstack.Docker
	profile spec.Profile
	tag     string
	root    string
}

var (
	envOnce sync.Once
	theEnv  *env
	envErr  string
)

// setup returns the engine and images, skipping only when KGCI_E2E is unset.
func setup(t *testing.T) *env {
	t.Helper()
	if os.Getenv("KGCI_E2E") != "1" {
		t.Skip("real-stack fault tests: set KGCI_E2E=1 (needs a Docker engine and `kgci build --load` images)")
	}
	envOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		e := &env{d: dockerstack.FromEnv(), tag: os.Getenv("KGCI_E2E_TAG")}
		if e.tag == "" {
			e.tag = "latest"
		}
		p, err := spec.ParseProfile(os.Getenv("KGCI_E2E_PROFILE"))
		if os.Getenv("KGCI_E2E_PROFILE") == "" {
			p = spec.Offline
		}
		if err != nil {
			envErr = err.Error()
			return
		}
		e.profile = p
		if _, err := e.d.Ping(ctx); err != nil {
			envErr = "KGCI_E2E=1 but " + err.Error()
			return
		}
		root, err := dockerstack.FindRepoFile(".", dockerstack.ProdComposeFile)
		if err != nil {
			envErr = err.Error()
			return
		}
		e.root = filepath.Dir(root)
		c := &Config{Docker: e.d, Profile: p, Out: os.Stderr}
		if err := c.defaults(); err != nil {
			envErr = err.Error()
			return
		}
		if err := EnsureImages(ctx, c, ImageRefs(p, e.tag)); err != nil {
			envErr = "KGCI_E2E=1 but " + err.Error()
			return
		}
		if err := buildSupplyChainTool(e.root); err != nil {
			envErr = err.Error()
			return
		}
		theEnv = e
	})
	if theEnv == nil {
		t.Fatal(envErr)
	}
	return theEnv
}

// run runs the suite with a fault and checks that the run left nothing behind. The
// reports are in res.Report and in the directory of the test's results.
func (e *env) run(t *testing.T, c Config) *Result {
	t.Helper()
	c.Docker, c.Profile, c.Tag = e.d, e.profile, e.tag
	c.ResultsDir = e.results(t)
	if c.ComposeFile == "" {
		c.ComposeFile = filepath.Join(e.root, dockerstack.ProdComposeFile)
	}
	c.RunID = "t" + dockerstack.NewRunID()
	if c.Out == nil {
		c.Out = &testWriter{t: t}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := Run(ctx, c)
	require.NoError(t, err)
	require.NoError(t, res.DownErr)
	e.assertClean(t, c.RunID)
	return res
}

// results is the test's results directory (one per test).
func (e *env) results(t *testing.T) string {
	p := filepath.Join(os.TempDir(), "kgci-e2etest", strings.ReplaceAll(t.Name(), "/", "_"))
	if e.keepResults() {
		_ = os.RemoveAll(p)
		return p
	}
	p = filepath.Join(t.TempDir(), "results")
	return p
}

// keepResults: KGCI_E2E_KEEP=1 leaves each test's reports in $TMPDIR/kgci-e2etest/<test>.
func (e *env) keepResults() bool { return os.Getenv("KGCI_E2E_KEEP") == "1" }

func resultsDir(res *Result) string {
	for _, f := range res.Files {
		if filepath.Base(f) == report.JSONFile {
			return filepath.Dir(f)
		}
	}
	return ""
}

func (e *env) assertClean(t *testing.T, runID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	left, err := dockerstack.Leftovers(ctx, e.d, runID)
	require.NoError(t, err)
	assert.Empty(t, left, "run %s left resources behind", runID)
}

type testWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// requireRed asserts the named check failed and its message and evidence contain the
// given fragments.
func requireRed(t *testing.T, res *Result, name string, fragments ...string) checks.Result {
	t.Helper()
	r, ok := res.Check(name)
	require.True(t, ok, "no result for %s", name)
	require.Equal(t, checks.Fail, r.Status, "%s: %s", name, r.Message)
	all := r.Message + "\n" + r.Details
	for _, f := range fragments {
		assert.Contains(t, all, f, "%s", name)
	}
	assert.False(t, res.Report.Passed())
	return r
}

func requireGreen(t *testing.T, res *Result, names ...string) {
	t.Helper()
	for _, n := range names {
		r, ok := res.Check(n)
		require.True(t, ok, "no result for %s", n)
		assert.Equal(t, checks.Pass, r.Status, "%s: %s", n, r.Message)
	}
}

func TestFaultDatabaseDownBeforeChecks(t *testing.T) {
	t.Parallel()
	e := setup(t)
	res := e.run(t, Config{
		Checks: []string{"health.backend_direct", "health.through_nginx", "health.frontend"},
		BeforeChecks: func(ctx context.Context, s *dockerstack.Stack) error {
			return s.StopService(ctx, dockerstack.Postgres, 5*time.Second)
		},
	})
	requireRed(t, res, "health.backend_direct", "returned 503", `database "unreachable"`, "the backend cannot reach PostgreSQL")
	requireRed(t, res, "health.through_nginx", "returned 503", "the backend cannot reach PostgreSQL")
	requireGreen(t, res, "health.frontend")
	// A failed run keeps every service's log.
	for _, svc := range dockerstack.Order {
		b, err := os.ReadFile(filepath.Join(resultsDir(res), "logs", svc+".log"))
		require.NoError(t, err, svc)
		assert.Contains(t, string(b), "# container kgci-"+res.Report.RunID+"-"+svc)
	}
	b, err := os.ReadFile(filepath.Join(resultsDir(res), "logs", "backend.log"))
	require.NoError(t, err)
	assert.Contains(t, string(b), "database unreachable")
}

// PostgreSQL joins the proxy-side network as well (what a compose file listing it under
// both networks would do): security.db_isolation names the attachment.
func TestFaultDatabaseOnTheProxyNetwork(t *testing.T) {
	t.Parallel()
	e := setup(t)
	res := e.run(t, Config{
		Checks: []string{"security.db_isolation"},
		BeforeChecks: func(ctx context.Context, s *dockerstack.Stack) error {
			_, err := s.D.Run(ctx, "network", "connect", s.ProxyNetwork(), s.Containers[dockerstack.Postgres])
			return err
		},
	})
	requireRed(t, res, "security.db_isolation", "postgres is attached to", "npm_proxy_network", "it must be on the internal network only")
}

func TestFaultBackendCrashesAtStart(t *testing.T) {
	t.Parallel()
	e := setup(t)
	t0 := time.Now()
	res := e.run(t, Config{
		Checks: []string{"health"},
		Override: map[string]dockerstack.Override{
			dockerstack.Backend: {Env: []string{"DATABASE_URL=mysql://kidney@kidney_genetics_postgres/kidney"}},
		},
	})
	r := requireRed(t, res, "startup.backend", "container exited with exit code 2", "DATABASE_URL must start with postgresql://")
	assert.Less(t, r.Duration, 20*time.Second, "an exited container is noticed at once, not at the bound")
	assert.Less(t, time.Since(t0), 60*time.Second)
	f, _ := res.Check("startup.frontend")
	assert.Equal(t, checks.Skip, f.Status)
	h, _ := res.Check("health.backend_direct")
	assert.Equal(t, checks.Skip, h.Status)
	assert.Contains(t, h.Message, "see startup.backend")
}

// nginxVariant writes a modified copy of nginx/nginx.prod.conf for a bind mount over the
// frontend's /etc/nginx/nginx.conf.
func nginxVariant(t *testing.T, e *env, edit func(string) string) string {
	b, err := os.ReadFile(filepath.Join(e.root, "nginx", "nginx.prod.conf"))
	require.NoError(t, err)
	out := edit(string(b))
	require.NotEqual(t, string(b), out, "the edit changed nothing: nginx.prod.conf moved on, update the test")
	p := filepath.Join(t.TempDir(), "nginx.conf")
	require.NoError(t, os.WriteFile(p, []byte(out), 0o644))
	return p
}

func TestFaultNginxWrongWebSocketPath(t *testing.T) {
	t.Parallel()
	e := setup(t)
	conf := nginxVariant(t, e, func(s string) string { return strings.Replace(s, "location /ws/ {", "location /wsx/ {", 1) })
	res := e.run(t, Config{
		Checks:   []string{"websocket", "health.through_nginx"},
		Override: map[string]dockerstack.Override{dockerstack.Frontend: {Args: []string{"-v", conf + ":/etc/nginx/nginx.conf:ro"}}},
	})
	requireRed(t, res, "websocket.upgrade", "answered 200 OK, want 101 Switching Protocols", "nginx served the app's index.html", "location /ws/")
	requireGreen(t, res, "health.through_nginx", "websocket.plain_api_not_upgraded")
}

func TestFaultNginxWithoutUpgradeHeaders(t *testing.T) {
	t.Parallel()
	e := setup(t)
	conf := nginxVariant(t, e, func(s string) string {
		s = strings.Replace(s, "proxy_set_header Upgrade $http_upgrade;", "", 1)
		return strings.Replace(s, "proxy_set_header Connection $connection_upgrade;", "", 1)
	})
	res := e.run(t, Config{
		Checks:   []string{"websocket", "browser.live_update"},
		Override: map[string]dockerstack.Override{dockerstack.Frontend: {Args: []string{"-v", conf + ":/etc/nginx/nginx.conf:ro"}}},
	})
	requireRed(t, res, "websocket.upgrade", "answered 404 Not Found, want 101 Switching Protocols", "the backend itself answered", "proxy_set_header Upgrade $http_upgrade")
	// What a person sees: the page loads, but a database change never arrives.
	requireRed(t, res, "browser.live_update", "the page's WebSocket did not connect", "location /ws/")
	requireScreenshot(t, res, "browser.live_update")
}

// requireScreenshot: a browser check leaves a picture of the page, red or green, linked
// from summary.md.
func requireScreenshot(t *testing.T, res *Result, name string) {
	t.Helper()
	r, ok := res.Check(name)
	require.True(t, ok)
	rel := filepath.Join(checks.ScreenshotDir, name+".png")
	require.Equal(t, []string{rel}, r.Files)
	b, err := os.ReadFile(filepath.Join(resultsDir(res), rel))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "\x89PNG"), "%s is a PNG", rel)
	md, err := os.ReadFile(filepath.Join(resultsDir(res), report.MarkdownFile))
	require.NoError(t, err)
	assert.Contains(t, string(md), "](screenshots/"+name+".png)")
}

// Without the SPA fallback every HTTP check passes and the start page works; a shared
// link to a gene is a 404.
func TestFaultNginxWithoutSPAFallback(t *testing.T) {
	t.Parallel()
	e := setup(t)
	conf := nginxVariant(t, e, func(s string) string {
		return strings.Replace(s, "try_files $uri $uri/ /index.html;", "try_files $uri $uri/ =404;", 1)
	})
	res := e.run(t, Config{
		Checks:   []string{"browser.deep_link", "browser.genes", "browser.live_update", "health.through_nginx"},
		Override: map[string]dockerstack.Override{dockerstack.Frontend: {Args: []string{"-v", conf + ":/etc/nginx/nginx.conf:ro"}}},
	})
	requireRed(t, res, "browser.deep_link", "nginx answered 404 for the deep link", "/genes/PKD1", "try_files $uri $uri/ /index.html;")
	requireScreenshot(t, res, "browser.deep_link")
	// Reached by a click, as a person does, the gene page works: only the link is broken.
	requireGreen(t, res, "browser.genes", "browser.live_update", "health.through_nginx")
}

// A Content-Security-Policy that forbids the page's own API calls: nginx answers every
// request an HTTP check makes, and the browser refuses to make them.
func TestFaultCSPBlocksTheAPI(t *testing.T) {
	t.Parallel()
	e := setup(t)
	conf := nginxVariant(t, e, func(s string) string {
		return strings.ReplaceAll(s, "connect-src 'self' ws: wss:;", "connect-src 'none';")
	})
	res := e.run(t, Config{
		Checks:   []string{"browser.genes", "health.through_nginx", "env_injection"},
		Override: map[string]dockerstack.Override{dockerstack.Frontend: {Args: []string{"-v", conf + ":/etc/nginx/nginx.conf:ro"}}},
	})
	requireRed(t, res, "browser.genes", "the gene table did not show the API's genes", "Content Security Policy")
	requireScreenshot(t, res, "browser.genes")
	requireGreen(t, res, "health.through_nginx", "env_injection")
}

// An image whose entrypoint no longer writes env-config.js: a frontend started with other
// URLs still calls the defaults.
func TestFaultFrontendIgnoresRuntimeURLs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	// nginx started directly: the image's env-config.js (development defaults) is served.
	img := derive(t, e, ImageRefs(e.profile, e.tag)[dockerstack.Frontend], `ENTRYPOINT ["nginx", "-g", "daemon off;"]`, `CMD []`)
	res := e.run(t, Config{
		Checks: []string{"browser.custom_urls"},
		Images: map[string]string{dockerstack.Frontend: img},
	})
	requireRed(t, res, "browser.custom_urls", "did not use them", "requests under /custom-api/: 0", "window._env_")
	requireScreenshot(t, res, "browser.custom_urls")
}

func TestFaultNginxPassesUpgradeOnAPI(t *testing.T) {
	t.Parallel()
	e := setup(t)
	conf := nginxVariant(t, e, func(s string) string {
		s = strings.Replace(s, `proxy_set_header Connection "";`, "proxy_set_header Connection $connection_upgrade;", 1)
		return strings.Replace(s, `proxy_set_header Upgrade "";`, "proxy_set_header Upgrade $http_upgrade;", 1)
	})
	res := e.run(t, Config{
		Checks:   []string{"websocket.plain_api_not_upgraded", "health.through_nginx"},
		Override: map[string]dockerstack.Override{dockerstack.Frontend: {Args: []string{"-v", conf + ":/etc/nginx/nginx.conf:ro"}}},
	})
	requireRed(t, res, "websocket.plain_api_not_upgraded", "with client Upgrade headers answered 403", `proxy_set_header Upgrade ""`)
	requireGreen(t, res, "health.through_nginx")
}

func TestFaultBackendRunsAsRoot(t *testing.T) {
	t.Parallel()
	e := setup(t)
	res := e.run(t, Config{
		Checks:   []string{"security.users", "security.capabilities"},
		Override: map[string]dockerstack.Override{dockerstack.Backend: {Args: []string{"--user", "0"}}},
	})
	requireRed(t, res, "security.users", "backend: `id -u` in the container is 0, want 1000")
	// Root without capabilities is still root with CapBnd 0: the capabilities check stays
	// green, the users check is the one that names the problem.
	requireGreen(t, res, "security.capabilities")
}

func TestFaultFrontendGetsCapabilitiesBack(t *testing.T) {
	t.Parallel()
	e := setup(t)
	res := e.run(t, Config{
		Checks:   []string{"security.capabilities"},
		Override: map[string]dockerstack.Override{dockerstack.Frontend: {Args: []string{"--cap-add", "NET_BIND_SERVICE"}}},
	})
	requireRed(t, res, "security.capabilities", "frontend: PID 1 has", "CapBnd 0000000000000400", "cap_drop: ALL in")
}

// composeVariant writes a copy of docker-compose.prod.yml with old replaced by new inside
// the service's block, and the test overlay beside it (policy.compose reads both).
func composeVariant(t *testing.T, e *env, svc, old, new string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, dockerstack.ProdComposeFile))
	require.NoError(t, err)
	prod := string(b)
	i := strings.Index(prod, "\n  "+svc+":")
	require.Positive(t, i)
	variant := prod[:i] + strings.Replace(prod[i:], old, new, 1)
	require.NotEqual(t, prod, variant, "the edit changed nothing: %s moved on, update the test", dockerstack.ProdComposeFile)
	dir := t.TempDir()
	compose := filepath.Join(dir, dockerstack.ProdComposeFile)
	require.NoError(t, os.WriteFile(compose, []byte(variant), 0o644))
	overlay, err := os.ReadFile(filepath.Join(e.root, dockerstack.TestOverlayFile))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, dockerstack.TestOverlayFile), overlay, 0o644))
	return compose
}

// A compose file that drifts from the architecture (the frontend gets a capability
// back) is what the stack would run: policy.compose judges it against the architecture.
func TestFaultComposeDriftsFromTheArchitecture(t *testing.T) {
	t.Parallel()
	e := setup(t)
	compose := composeVariant(t, e, "frontend", "cap_drop:\n      - ALL", "cap_drop:\n      - ALL\n    cap_add:\n      - NET_BIND_SERVICE")
	res := e.run(t, Config{Checks: []string{"policy.compose"}, ComposeFile: compose})
	requireRed(t, res, "policy.compose", "frontend: no capability added back after cap_drop ALL", "services.frontend.cap_add has [NET_BIND_SERVICE]", compose)
	assert.Nil(t, res.Stack, "the compose files are read without starting the stack")
}

// policy.runtime judges what Docker applied, against the architecture: a compose file
// with the backend's log size changed (policy.compose sees it too), and a frontend
// container created with a capability its (correct) compose entry does not give, which
// only the running container shows. Each is named with the inspect field, and the message
// says where the fix is: the compose key, or how the container was created.
func TestFaultRunningContainersDriftFromTheArchitecture(t *testing.T) {
	t.Parallel()
	e := setup(t)
	compose := composeVariant(t, e, "backend", "logging: *logging", "logging:\n      driver: json-file\n      options:\n        max-size: 10m\n        max-file: \"5\"")
	res := e.run(t, Config{
		Checks:      []string{"policy"},
		ComposeFile: compose,
		Override:    map[string]dockerstack.Override{dockerstack.Frontend: {Args: []string{"--cap-add", "NET_RAW"}}},
	})
	r := requireRed(t, res, "policy.runtime", "2 requirement(s) of the architecture broken by the running containers",
		"backend: log rotation json-file, max-size 50m, max-file 5 (Log Rotation): container kgci-"+res.Report.RunID+"-backend HostConfig.LogConfig has driver \"json-file\", max-size \"10m\", max-file \"5\" (set services.backend.logging in "+compose+")",
		"frontend: no capability added back after cap_drop ALL: container kgci-"+res.Report.RunID+"-frontend HostConfig.CapAdd has [", "NET_RAW",
		"although services.frontend.cap_add in "+compose+" is right: the container was created otherwise")
	t.Logf("policy.runtime: %s", r.Message)
	c := requireRed(t, res, "policy.compose", "services.backend.logging has driver \"json-file\", max-size \"10m\"")
	assert.NotContains(t, c.Message, "cap_add", "the compose file gives the frontend no capability: only the running container shows it")
}

func TestFaultImageOverBudget(t *testing.T) {
	t.Parallel()
	e := setup(t)
	budgets := filepath.Join(t.TempDir(), "budgets.yaml")
	require.NoError(t, os.WriteFile(budgets, []byte(string(e.profile)+":\n  backend:\n    compressed: 1MB\n  frontend:\n    uncompressed: 1kB\n"), 0o644))
	res := e.run(t, Config{Checks: []string{"size.budgets"}, BudgetFile: budgets})
	requireRed(t, res, "size.budgets", "image size over budget", "backend compressed", "> 1.0 MB", "frontend uncompressed", "> 0.0 MB", budgets)
}

// derive makes a variant of an image with `docker commit --change`, removed at the end.
func derive(t *testing.T, e *env, from string, changes ...string) string {
	ctx := context.Background()
	id := dockerstack.NewRunID()
	ref := "kgci-fault/" + id + ":derived"
	cname := "kgci-derive-" + id
	_, err := e.d.Run(ctx, "create", "--name", cname, from)
	require.NoError(t, err)
	defer e.d.Run(ctx, "rm", "-f", cname)
	args := []string{"commit"}
	for _, c := range changes {
		args = append(args, "--change", c)
	}
	_, err = e.d.Run(ctx, append(args, cname, ref)...)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = e.d.Run(context.Background(), "rmi", "-f", ref) })
	return ref
}

func TestFaultHealthcheckWrongPath(t *testing.T) {
	t.Parallel()
	e := setup(t)
	img := derive(t, e, ImageRefs(e.profile, e.tag)[dockerstack.Backend], "HEALTHCHECK --interval=30s --timeout=10s --start-period=40s CMD curl -fsS http://127.0.0.1:8000/nope")
	t0 := time.Now()
	res := e.run(t, Config{
		Checks:         []string{"healthcheck.image_backend"},
		Images:         map[string]string{dockerstack.Backend: img},
		StartupTimeout: 90 * time.Second,
	})
	r := requireRed(t, res, "healthcheck.image_backend", "exits 22", "404", "the probe's URL, path or port is wrong")
	assert.Less(t, r.Duration, 10*time.Second, "the probe's own failure, not a timeout")
	s := requireRed(t, res, "startup.backend", "answers HTTP on", "failed 3 times in a row after that", "exit 22", "404", "healthcheck.image_backend runs the probe by hand")
	assert.Less(t, s.Duration, 45*time.Second, "a wrong probe fails fast, long before the 90s bound and the image's 40s start period")
	assert.Less(t, time.Since(t0), 90*time.Second)
}

func TestFaultHealthcheckToolMissing(t *testing.T) {
	t.Parallel()
	e := setup(t)
	img := derive(t, e, ImageRefs(e.profile, e.tag)[dockerstack.Backend], `HEALTHCHECK CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000/api/health"]`)
	res := e.run(t, Config{
		Checks:         []string{"healthcheck.image_backend"},
		Images:         map[string]string{dockerstack.Backend: img},
		StartupTimeout: 90 * time.Second,
	})
	requireRed(t, res, "healthcheck.image_backend", "the probe's tool is not in the image")
}

func TestFaultServiceNeverHealthy(t *testing.T) {
	t.Parallel()
	e := setup(t)
	bound := 8 * time.Second
	res := e.run(t, Config{
		Checks: []string{"health.backend_direct"},
		// The process runs but never serves: no exit, no HTTP answer, just no health.
		Override: map[string]dockerstack.Override{dockerstack.Backend: {
			Cmd:            []string{"sh", "-c", "echo backend stuck before serving; exec sleep 3600"},
			StartupTimeout: bound,
		}},
	})
	r := requireRed(t, res, "startup.backend", "after 8s", "never succeeded", "backend stuck before serving", "exit 7")
	assert.GreaterOrEqual(t, r.Duration, bound, "waits for the bound")
	assert.Less(t, r.Duration, bound+10*time.Second, "and not much longer")
	h, _ := res.Check("health.backend_direct")
	assert.Equal(t, checks.Skip, h.Status)
}

// A check starts as soon as the services it uses are healthy, while the others still
// start: with a frontend that never becomes healthy, the backend's and the database's
// checks run (and pass) during its wait, and the frontend's check is skipped.
func TestChecksStartWhenTheirServicesAreUp(t *testing.T) {
	t.Parallel()
	e := setup(t)
	t0 := time.Now()
	res := e.run(t, Config{
		Checks: []string{"health.backend_direct", "security.db_isolation", "health.frontend"},
		Override: map[string]dockerstack.Override{dockerstack.Frontend: {
			Cmd:            []string{"sh", "-c", "echo frontend stuck before serving; exec sleep 3600"},
			StartupTimeout: 8 * time.Second,
		}},
	})
	fe := requireRed(t, res, "startup.frontend", "never succeeded", "frontend stuck before serving")
	gaveUp := fe.Start.Add(fe.Duration)
	for _, name := range []string{"health.backend_direct", "security.db_isolation"} {
		requireGreen(t, res, name)
		r, _ := res.Check(name)
		require.False(t, r.Start.IsZero(), name)
		assert.True(t, r.Start.Before(gaveUp), "%s started %s after the wait for the frontend ended; it needs only postgres and the backend", name, r.Start.Sub(gaveUp))
	}
	h, _ := res.Check("health.frontend")
	assert.Equal(t, checks.Skip, h.Status, h.Message)

	// What Docker saw: the later containers are created while PostgreSQL initialises,
	// and the probe containers of security.db_isolation start only after the last
	// service's container has started, so that they do not slow that start.
	ev := runEvents(t, e, res.Report.RunID, t0)
	pg, _ := res.Check("startup.postgres")
	pgHealthy := pg.Start.Add(pg.Duration)
	prefix := "kgci-" + res.Report.RunID + "-"
	created := ev.first("create", prefix+dockerstack.Backend)
	require.False(t, created.IsZero(), "no create event for the backend: %s", ev)
	assert.True(t, created.Before(pgHealthy), "the backend was created %s after postgres was healthy; it should be created while postgres initialises", created.Sub(pgHealthy))
	feStarted := ev.first("start", prefix+dockerstack.Frontend)
	require.False(t, feStarted.IsZero(), "no start event for the frontend: %s", ev)
	probes := 0
	for _, x := range ev {
		if x.action == "create" && strings.HasPrefix(x.name, prefix+"dbprobe") {
			probes++
			assert.False(t, x.at.Before(feStarted), "%s was created %s before the frontend's container started", x.name, feStarted.Sub(x.at))
		}
	}
	assert.Equal(t, 2, probes, "security.db_isolation's probe containers: %s", ev)
}

type runEvent struct {
	at           time.Time
	action, name string
}

type eventList []runEvent

func (l eventList) first(action, name string) time.Time {
	for _, x := range l {
		if x.action == action && x.name == name {
			return x.at
		}
	}
	return time.Time{}
}

func (l eventList) String() string {
	var b strings.Builder
	for _, x := range l {
		fmt.Fprintf(&b, "\n  %s %s %s", x.at.Format("15:04:05.000"), x.action, x.name)
	}
	return b.String()
}

// runEvents is what Docker recorded for the run's containers since t0, in order.
func runEvents(t *testing.T, e *env, runID string, since time.Time) eventList {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := e.d.Run(ctx, "events", "--since", fmt.Sprintf("%d", since.Unix()), "--until", fmt.Sprintf("%d", time.Now().Unix()+1),
		"--filter", "type=container", "--filter", "label="+dockerstack.LabelRun+"="+runID, "--format", "{{json .}}")
	require.NoError(t, err)
	var l eventList
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var x struct {
			Action   string
			TimeNano int64 `json:"timeNano"`
			Actor    struct{ Attributes map[string]string }
		}
		require.NoError(t, json.Unmarshal([]byte(line), &x), line)
		l = append(l, runEvent{at: time.Unix(0, x.TimeNano), action: x.Action, name: x.Actor.Attributes["name"]})
	}
	return l
}

// TestInterruptCleansUp sends SIGINT to a real `kgci test-e2e`, once while a service is
// starting and once while the checks run: it must exit non-zero and remove everything of
// its run.
func TestInterruptCleansUp(t *testing.T) {
	t.Parallel()
	e := setup(t)
	bin := kgciBinary(t, e)
	for _, when := range []string{"postgres  healthy", "frontend  healthy"} {
		t.Run(strings.Fields(when)[0], func(t *testing.T) {
			results := t.TempDir()
			cmd := exec.Command(bin, "test-e2e", "--profile", string(e.profile), "--tag", e.tag, "--results", results, "--budgets", "none")
			cmd.Dir = e.root
			cmd.Env = os.Environ()
			if e.d.Host != "" {
				cmd.Env = append(cmd.Env, "DOCKER_HOST="+e.d.Host)
			}
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			require.NoError(t, cmd.Start())
			var runID string
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				l := sc.Text()
				t.Log(l)
				if strings.HasPrefix(l, "run ") && runID == "" {
					runID = strings.TrimSuffix(strings.Fields(l)[1], ":")
				}
				if strings.HasPrefix(l, when) {
					require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
					break
				}
			}
			require.NotEmpty(t, runID)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for sc.Scan() {
					t.Log(sc.Text())
				}
			}()
			err = cmd.Wait()
			<-done
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "an interrupted run must exit non-zero")
			assert.Equal(t, 1, ee.ExitCode())
			assert.Contains(t, stderr.String(), "interrupted")
			e.assertClean(t, runID)
			// The SBOM tool it started (its arguments name the results directory) ended
			// before it did. (Here the teardown usually outlasts the tool anyway; what
			// guarantees it is test-e2e cancelling the tool and waiting for it.)
			assert.Empty(t, processesMentioning(results), "processes left behind")
		})
	}
}

// processesMentioning lists the command lines of running processes that contain s.
func processesMentioning(s string) []string {
	var out []string
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if cl := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cl, s) {
			out = append(out, d.Name()+": "+cl)
		}
	}
	return out
}

// TestKeepOnFailure leaves a failed run's containers for inspection, as asked, and only then.
func TestKeepOnFailure(t *testing.T) {
	t.Parallel()
	e := setup(t)
	c := Config{
		Docker: e.d, Profile: e.profile, Tag: e.tag, ResultsDir: t.TempDir(), RunID: "t" + dockerstack.NewRunID(),
		ComposeFile: filepath.Join(e.root, dockerstack.ProdComposeFile), KeepOnFailure: true, Out: &testWriter{t: t},
		Checks:   []string{"health.backend_direct"},
		Override: map[string]dockerstack.Override{dockerstack.Backend: {Env: []string{"LOG_LEVEL=loud"}}},
	}
	res, err := Run(context.Background(), c)
	require.NoError(t, err)
	requireRed(t, res, "startup.backend", "LOG_LEVEL='loud' is not one of")
	assert.True(t, res.Kept)
	ctx := context.Background()
	left, err := dockerstack.Leftovers(ctx, e.d, c.RunID)
	require.NoError(t, err)
	assert.Contains(t, left, "container kgci-"+c.RunID+"-postgres", "kept for inspection")
	require.NoError(t, dockerstack.RemoveRun(ctx, e.d, c.RunID))
	e.assertClean(t, c.RunID)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if daggerBinDir != "" {
		os.RemoveAll(daggerBinDir)
	}
	if supplyBinDir != "" {
		os.RemoveAll(supplyBinDir)
	}
	os.Exit(code)
}

var supplyBinDir string

// buildSupplyChainTool builds kgci-supplychain (its own module) for the in-process runs'
// supplychain.* checks, unless KGCI_SUPPLYCHAIN names one already.
func buildSupplyChainTool(root string) error {
	if os.Getenv("KGCI_SUPPLYCHAIN") != "" {
		return nil
	}
	dir, err := os.MkdirTemp("", "kgci-supplychain-")
	if err != nil {
		return err
	}
	supplyBinDir = dir
	bin := filepath.Join(dir, "kgci-supplychain")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kgci-supplychain")
	build.Dir = filepath.Join(root, "ci", "supplychain")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building kgci-supplychain: %v\n%s", err, out)
	}
	return os.Setenv("KGCI_SUPPLYCHAIN", bin)
}

// kgciBinary is the real command, built as the Dagger path builds it.
func kgciBinary(t *testing.T, e *env) string {
	return filepath.Join(daggerBinaries(t, e.root), "kgci")
}

// TestCheckCommand runs `kgci check` (the URL-only checks the Dagger pipeline uses) against
// a stack brought up by dockerstack, and checks its guard against foreign targets.
func TestCheckCommand(t *testing.T) {
	t.Parallel()
	e := setup(t)
	bin := kgciBinary(t, e)
	compose, err := dockerstack.LoadCompose(filepath.Join(e.root, dockerstack.ProdComposeFile))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runID := "t" + dockerstack.NewRunID()
	stack, err := dockerstack.Up(ctx, dockerstack.Options{Docker: e.d, Compose: compose, RunID: runID, Images: ImageRefs(e.profile, e.tag)})
	defer func() {
		require.NoError(t, stack.Down(time.Minute))
		e.assertClean(t, runID)
	}()
	require.NoError(t, err)

	// The stack ran the health checks itself while the services started: the containers
	// keep the compose file's intervals for Docker's own probes (a 1 s interval went on
	// probing all run long, at about 150 ms of CPU a probe).
	for _, svc := range dockerstack.Order {
		info, err := e.d.Inspect(ctx, stack.Containers[svc])
		require.NoError(t, err)
		want, err := time.ParseDuration(compose.Services[svc].Healthcheck.Interval)
		require.NoError(t, err, svc)
		require.NotNil(t, info.Config.Healthcheck, svc)
		assert.Equal(t, want, time.Duration(info.Config.Healthcheck.Interval), "%s: Docker's own probe interval", svc)
	}

	check := func(args ...string) (int, string, string) {
		results := t.TempDir()
		cmd := exec.Command(bin, append([]string{"check", "--results", results}, args...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return code, string(out), results
	}
	code, out, results := check("--backend-url", stack.URLs[dockerstack.Backend], "--frontend-url", stack.URLs[dockerstack.Frontend])
	require.Equal(t, 0, code, out)
	var js struct {
		Command, Runtime string
		Passed           bool
		Counts           struct{ Pass, Fail, Skip int }
	}
	b, err := os.ReadFile(filepath.Join(results, report.JSONFile))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &js))
	assert.Equal(t, "check", js.Command)
	assert.Equal(t, "docker", js.Runtime)
	assert.True(t, js.Passed)
	assert.Equal(t, len(checks.URLOnly()), js.Counts.Pass, out)

	code, out, _ = check("--backend-url", "http://192.0.2.10:8000")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "only targets 127.0.0.1 or localhost")

	// A failing check makes the command fail: the backend URL given as the frontend.
	code, out, _ = check("--frontend-url", stack.URLs[dockerstack.Backend], "--checks", "health.frontend")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "FAIL health.frontend")
}
