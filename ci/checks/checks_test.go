package checks

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

func TestParseEnvConfig(t *testing.T) {
	cfg, err := ParseEnvConfig(`// written at start
window._env_ = { API_BASE_URL: "/api", WS_URL: "/ws", ENVIRONMENT: "production" };
`)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"API_BASE_URL": "/api", "WS_URL": "/ws", "ENVIRONMENT": "production"}, cfg)

	cfg, err = ParseEnvConfig(`window._env_={"WS_URL":"wss://x.org/ws\u0027\"}, EVIL: \"1\"","ENVIRONMENT":"a\\b",};`)
	require.NoError(t, err)
	assert.Equal(t, `wss://x.org/ws'"}, EVIL: "1"`, cfg["WS_URL"], "a value that looks like more keys stays one value")
	assert.Equal(t, `a\b`, cfg["ENVIRONMENT"])
	assert.NotContains(t, cfg, "EVIL")

	for _, bad := range []string{
		``,
		`window._env_ = { WS_URL: '/ws' };`, // not the entrypoint's quoting
		`window._env_ = { WS_URL: "/ws" }; alert(1);`,     // trailing code
		`window._env_ = { WS_URL: "/ws", WS_URL: "/x" };`, // duplicate key
		`window._env_ = { WS_URL: "/ws"`,
		`window._env_ = { WS_URL: "a` + "\n" + `b" };`,
	} {
		_, err := ParseEnvConfig(bad)
		assert.Error(t, err, "%q", bad)
	}
}

// TestEnvConfigFromTheRealEntrypoint runs scripts/docker-entrypoint.sh with hostile values
// and parses what it writes: the checker must read back exactly what the container got.
func TestEnvConfigFromTheRealEntrypoint(t *testing.T) {
	script, err := dockerstack.FindRepoFile(".", "scripts/docker-entrypoint.sh")
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), "env-config.js")
	values := map[string]string{
		"API_BASE_URL": `https://api.example.org/v1?a=1&b="2"`,
		"WS_URL":       "/ws</script><script>alert('x')</script>\\",
		"ENVIRONMENT":  "staging\u2028ünïcode\ttab",
	}
	cmd := exec.Command("sh", script, "true")
	cmd.Env = append(os.Environ(), "ENV_CONFIG_PATH="+out)
	for k, v := range values {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	js, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.NotContains(t, string(js), "</script>", "the entrypoint escapes markup")
	cfg, err := ParseEnvConfig(string(js))
	require.NoError(t, err, string(js))
	assert.Equal(t, values, cfg)
}

func TestEventsURL(t *testing.T) {
	page := "http://127.0.0.1:41234"
	for ws, want := range map[string]string{
		"/ws":                    "ws://127.0.0.1:41234/ws/events",
		"/ws/":                   "ws://127.0.0.1:41234/ws/events",
		"ws":                     "ws://127.0.0.1:41234/ws/events",
		"/custom-ws":             "ws://127.0.0.1:41234/custom-ws/events",
		"ws://other:9/ws":        "ws://other:9/ws/events",
		"https://db.example/ws/": "wss://db.example/ws/events",
		"//db.example/ws":        "ws://db.example/ws/events",
	} {
		got, err := EventsURL(ws, page)
		require.NoError(t, err)
		assert.Equal(t, want, got, "WS_URL %q", ws)
	}
	got, _ := EventsURL("/ws", "https://db.example")
	assert.Equal(t, "wss://db.example/ws/events", got)
}

func TestParseProcStatus(t *testing.T) {
	p, err := ParseProcStatus("Name:\tnginx\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t7\nUid:\t101\t101\t101\t101\nGid:\t101\t101\t101\t101\n" +
		"CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\nNoNewPrivs:\t1\n")
	require.NoError(t, err)
	assert.Equal(t, ProcStatus{Name: "nginx", Pid: 7, Uid: [4]int{101, 101, 101, 101}, CapBnd: 0xa80425fb, NoNewPrivs: 1}, p)
	_, err = ParseProcStatus("Name:\tx\nPid:\t1\n")
	assert.ErrorContains(t, err, "no Uid line")
}

// TestOtherUsers: a process as another user fails at once; runc's init of a concurrent
// `docker exec` (root for a moment) counts only if it is still there when looked at again.
func TestOtherUsers(t *testing.T) {
	u := func(pid int, name string, uid int) ProcStatus {
		return ProcStatus{Pid: pid, Name: name, Uid: [4]int{uid, uid, uid, uid}}
	}
	ps := []ProcStatus{u(1, "python", 1000), u(7, "runc:[2:INIT]", 0)}
	never := func() ([]ProcStatus, error) { t.Fatal("no need to look again"); return nil, nil }
	looks := 0
	later := func(again ...ProcStatus) func() ([]ProcStatus, error) {
		return func() ([]ProcStatus, error) { looks++; return again, nil }
	}

	bad, err := otherUsers([]ProcStatus{u(1, "nginx", 101), u(8, "nginx", 0)}, 101, never)
	require.NoError(t, err)
	assert.Equal(t, []ProcStatus{u(8, "nginx", 0)}, bad, "a root nginx master is no exec init")

	bad, err = otherUsers(ps, 1000, later(u(1, "python", 1000), u(9, "runc:[2:INIT]", 0)))
	require.NoError(t, err)
	assert.Empty(t, bad, "the exec went on as the container's user; a new exec's init is not the one seen")
	assert.Equal(t, 1, looks)

	looks = 0
	bad, err = otherUsers(ps, 1000, later(ps...))
	require.NoError(t, err)
	assert.Equal(t, []ProcStatus{u(7, "runc:[2:INIT]", 0)}, bad, "still root after every look")
	assert.Equal(t, 5, looks)

	bad, err = otherUsers([]ProcStatus{u(1, "python", 1000)}, 1000, never)
	require.NoError(t, err)
	assert.Empty(t, bad)
}

// TestOffendersNoNewPrivs: the capabilities check's use of the same rule. runc's init of a
// concurrent exec has no no_new_privs until just before it execs; a process that keeps 0
// is reported.
func TestOffendersNoNewPrivs(t *testing.T) {
	p := func(pid int, name string, nnp int) ProcStatus {
		return ProcStatus{Pid: pid, Name: name, NoNewPrivs: nnp}
	}
	noNNP := func(q ProcStatus) bool { return q.NoNewPrivs != 1 }
	ps := []ProcStatus{p(1, "python", 1), p(33, "runc:[2:INIT]", 0)}
	bad, err := offenders(ps, noNNP, func() ([]ProcStatus, error) { return []ProcStatus{p(1, "python", 1), p(33, "curl", 1)}, nil })
	require.NoError(t, err)
	assert.Empty(t, bad, "the exec's init became curl with no_new_privs")

	bad, err = offenders([]ProcStatus{p(1, "python", 1), p(12, "sh", 0)}, noNNP, func() ([]ProcStatus, error) {
		t.Fatal("a shell without no_new_privs is no exec init: no need to look again")
		return nil, nil
	})
	require.NoError(t, err)
	assert.Equal(t, []ProcStatus{p(12, "sh", 0)}, bad)
}

// TestNoContainers: test-e2e starts no containers when every selected check reads only the
// images or the compose files; such a check runs without a stack when what it reads is
// there, any other is skipped.
func TestNoContainers(t *testing.T) {
	pick := func(names ...string) []Check {
		l, err := Select(All(), names)
		require.NoError(t, err)
		return l
	}
	assert.True(t, NoContainers(pick("size", "supplychain", "security.no_secrets", "security.no_build_tools", "policy.compose")))
	assert.False(t, NoContainers(pick("supplychain", "health.backend_direct")), "a health check needs the stack")
	assert.False(t, NoContainers(pick("policy")), "policy.runtime reads the running containers")
	assert.False(t, NoContainers(nil), "no checks selected means all of them")

	e := &Env{DockerCLI: &dockerstack.Docker{}}
	_, skip := e.precondition(context.Background(), sizeBudgets)
	assert.False(t, skip, "size.budgets runs on the images without a stack")
	o, skip := e.precondition(context.Background(), securityUsers)
	assert.True(t, skip)
	assert.Contains(t, o.Message, "needs the Docker runtime")
	_, skip = e.precondition(context.Background(), policyCompose)
	assert.True(t, skip, "policy.compose without the compose file")
	_, skip = (&Env{Compose: &dockerstack.Compose{}}).precondition(context.Background(), policyCompose)
	assert.False(t, skip, "policy.compose runs on the compose file without a stack")
	_, skip = (&Env{}).precondition(context.Background(), sizeBudgets)
	assert.True(t, skip, "a URL-only run (kgci check) has no engine to read images from")
}

// TestSelect: a name picks that check, a group (the part before the dot) all of its checks;
// the result keeps the list's order, holds each check once, and an unknown name is an error
// that lists the known ones.
func TestSelect(t *testing.T) {
	list := []Check{{Name: "health.a"}, {Name: "ws.b"}, {Name: "health.c"}, {Name: "solo"}}
	names := func(l []Check) []string {
		var out []string
		for _, c := range l {
			out = append(out, c.Name)
		}
		return out
	}
	for _, tc := range []struct {
		sel, want []string
	}{
		{nil, []string{"health.a", "ws.b", "health.c", "solo"}},
		{[]string{"solo", "health"}, []string{"health.a", "health.c", "solo"}},
		{[]string{"health.c", "ws"}, []string{"ws.b", "health.c"}},
		{[]string{"health", "health.a"}, []string{"health.a", "health.c"}},
	} {
		l, err := Select(list, tc.sel)
		require.NoError(t, err, "%q", tc.sel)
		assert.Equal(t, tc.want, names(l), "Select %q", tc.sel)
	}
	_, err := Select(list, []string{"health", "health.nope"})
	assert.EqualError(t, err, `no check or group named "health.nope"; known checks: health.a, health.c, solo, ws.b`)
}

// TestCheckList: the real list's names are the report's stable interface (unique, grouped,
// lower case), and kgci check gets exactly the checks that need no Docker runtime, each
// saying which URL it uses.
func TestCheckList(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range All() {
		assert.False(t, seen[c.Name], c.Name)
		seen[c.Name] = true
		assert.Regexp(t, `^[a-z_]+(\.[a-z_]+)?$`, c.Name)
	}
	urlOnly := map[string]bool{}
	for _, c := range URLOnly() {
		urlOnly[c.Name] = true
		assert.NotEmpty(t, c.URL, "%s: a URL-only check must say which URL it uses", c.Name)
	}
	for _, c := range All() {
		assert.Equal(t, !c.Docker, urlOnly[c.Name], "%s (Docker %v) in URLOnly", c.Name, c.Docker)
	}
}

// TestRunOrder: independent checks overlap in time; destructive ones start only after every
// other check finished, one at a time; results keep the list order.
func TestRunOrder(t *testing.T) {
	var running, maxRunning, destructiveRunning int32
	var mu sync.Mutex
	var finished []string
	mk := func(name string, destructive bool) Check {
		return Check{Name: name, Destructive: destructive, Run: func(ctx context.Context, e *Env) Outcome {
			n := atomic.AddInt32(&running, 1)
			defer atomic.AddInt32(&running, -1)
			for {
				m := atomic.LoadInt32(&maxRunning)
				if n <= m || atomic.CompareAndSwapInt32(&maxRunning, m, n) {
					break
				}
			}
			if destructive {
				if atomic.AddInt32(&destructiveRunning, 1) != 1 || n != 1 {
					return failf("destructive check overlapped with another")
				}
				defer atomic.AddInt32(&destructiveRunning, -1)
			}
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			finished = append(finished, name)
			mu.Unlock()
			return passf("ok")
		}}
	}
	list := []Check{mk("a.one", false), mk("z.destroy", true), mk("a.two", false), mk("a.three", false), mk("z.destroy2", true)}
	var calls int32
	rs := Run(context.Background(), list, &Env{}, func(Result) { atomic.AddInt32(&calls, 1) })
	require.Len(t, rs, 5)
	for i, r := range rs {
		assert.Equal(t, list[i].Name, r.Name)
		assert.Equal(t, Pass, r.Status, r.Message)
		assert.GreaterOrEqual(t, r.Duration, 50*time.Millisecond)
	}
	assert.EqualValues(t, 5, calls)
	assert.EqualValues(t, 3, maxRunning, "the three independent checks ran at the same time")
	assert.Equal(t, []string{"z.destroy", "z.destroy2"}, finished[3:])
}

func TestRunTimeoutPanicAndSkips(t *testing.T) {
	list := []Check{
		{Name: "t.slow", Timeout: 50 * time.Millisecond, Run: func(ctx context.Context, e *Env) Outcome {
			<-ctx.Done()
			return failf("waited for the backend")
		}},
		{Name: "t.panic", Run: func(ctx context.Context, e *Env) Outcome { panic("boom") }},
		{Name: "t.docker", Docker: true, Run: func(ctx context.Context, e *Env) Outcome { return passf("must not run") }},
		{Name: "t.frontend", URL: dockerstack.Frontend, Run: func(ctx context.Context, e *Env) Outcome { return passf("must not run") }},
		{Name: "t.backend", URL: dockerstack.Backend, Needs: []string{dockerstack.Postgres}, Run: func(ctx context.Context, e *Env) Outcome { return passf("ran") }},
	}
	rs := Run(context.Background(), list, &Env{Runtime: "dagger", BackendURL: "http://backend:8000"}, nil)
	assert.Equal(t, Fail, rs[0].Status)
	assert.Equal(t, "timed out after 50ms: waited for the backend", rs[0].Message)
	assert.Equal(t, Fail, rs[1].Status)
	assert.Contains(t, rs[1].Message, "check crashed: boom")
	assert.Equal(t, Skip, rs[2].Status)
	assert.Contains(t, rs[2].Message, "needs the Docker runtime")
	assert.Equal(t, Skip, rs[3].Status)
	assert.Equal(t, "needs --frontend-url", rs[3].Message)
	assert.Equal(t, Pass, rs[4].Status)
}

func TestGuardedClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/away" {
			http.Redirect(w, r, "http://192.0.2.1/", http.StatusFound)
			return
		}
		w.WriteHeader(204)
	}))
	defer srv.Close()
	e := &Env{Runtime: "docker", FrontendURL: srv.URL}
	r, err := e.get(context.Background(), srv.URL+"/", nil)
	require.NoError(t, err)
	assert.Equal(t, 204, r.StatusCode)
	_, err = e.get(context.Background(), srv.URL+"/away", nil)
	assert.ErrorContains(t, err, "refusing to connect to 192.0.2.1:80", "a redirect off the machine is refused")
	_, err = e.get(context.Background(), "http://example.org/", nil)
	assert.ErrorContains(t, err, "refusing to connect")

	// A host name given as a URL is no licence: only loopback is reached.
	d := &Env{Runtime: "docker", BackendURL: "http://backend:8000"}
	assert.True(t, d.allowedHost("127.0.0.1"))
	assert.False(t, d.allowedHost("backend"))
	_, err = d.dial(context.Background(), "tcp", net.JoinHostPort("10.0.0.1", "5432"))
	assert.ErrorContains(t, err, "refusing")
}

// TestURLChecksAgainstFakes exercises the URL-only checks against small in-process
// servers, each one wrong in a way the check must name.
func TestURLChecksAgainstFakes(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/health":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"status":"ok","database":"connected"}`))
		case "/health":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"status":"healthy","service":"kidney_genetics_frontend"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		w.Write([]byte(`{"status":"error","database":"unreachable","detail":"connection refused"}`))
	}))
	defer down.Close()
	badGateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(502)
	}))
	defer badGateway.Close()

	ctx := context.Background()
	e := &Env{Runtime: "docker", BackendURL: ok.URL, FrontendURL: ok.URL}
	assert.Equal(t, Pass, healthBackendDirect.Run(ctx, e).Status)
	assert.Equal(t, Pass, healthFrontend.Run(ctx, e).Status)
	o := healthBackendDirect.Run(ctx, &Env{Runtime: "docker", BackendURL: down.URL})
	assert.Equal(t, Fail, o.Status)
	assert.Contains(t, o.Message, `database "unreachable" (connection refused): the backend cannot reach PostgreSQL`)
	o = healthThroughNginx.Run(ctx, &Env{Runtime: "docker", FrontendURL: badGateway.URL})
	assert.Equal(t, Fail, o.Status)
	assert.Contains(t, o.Message, "returned 502: nginx cannot reach the backend")
	o = healthFrontend.Run(ctx, &Env{Runtime: "docker", FrontendURL: down.URL})
	assert.Equal(t, Fail, o.Status)
	assert.Contains(t, o.Message, "returned 503, want 200")
}

// Checks that read only the images wait for background work (Prefetch); holding the
// parallelism slots meanwhile would keep the stack's checks from starting. More of them
// than there are slots must all be running at once.
func TestRunArtifactChecksTakeNoSlot(t *testing.T) {
	n := Parallelism + 2
	var running int32
	all := make(chan struct{})
	var list []Check
	for i := 0; i < n; i++ {
		list = append(list, Check{Name: fmt.Sprintf("image.%d", i), Docker: true, Slow: true, usesImages: true,
			Run: func(ctx context.Context, e *Env) Outcome {
				if atomic.AddInt32(&running, 1) == int32(n) {
					close(all)
				}
				select {
				case <-all:
					return passf("read")
				case <-ctx.Done():
					return failf("only %d of %d image checks ran at once", atomic.LoadInt32(&running), n)
				}
			}, Timeout: 2 * time.Second})
	}
	rs := Run(context.Background(), list, &Env{DockerCLI: &dockerstack.Docker{}}, nil)
	for _, r := range rs {
		assert.Equal(t, Pass, r.Status, "%s: %s", r.Name, r.Message)
	}
}
