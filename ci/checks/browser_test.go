package checks

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireChromium: the browser checks' plumbing runs against a real Chromium. scripts/test.sh
// installs one and sets KGCI_REQUIRE_CHROMIUM, so CI cannot skip these.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := ChromiumPath(); err != nil {
		if os.Getenv("KGCI_REQUIRE_CHROMIUM") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

func TestChromiumPathNamesTheFix(t *testing.T) {
	t.Setenv(ChromiumEnv, "/nonexistent/chromium")
	_, err := ChromiumPath()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "CHROMIUM_PATH=/nonexistent/chromium is not an executable Chromium")

	t.Setenv(ChromiumEnv, "")
	t.Setenv("PATH", t.TempDir())
	_, err = ChromiumPath()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "apt-get install -y chromium")
}

func TestMissingChromiumFailsTheCheckWithTheFix(t *testing.T) {
	t.Setenv(ChromiumEnv, "")
	t.Setenv("PATH", t.TempDir())
	e := &Env{FrontendURL: "http://127.0.0.1:1"}
	defer e.browser.close()
	o := browserCheck(Check{Name: "browser.x"}, func(context.Context, *Env, *page) Outcome { return passf("unreachable") }).Run(context.Background(), e)
	assert.Equal(t, Fail, o.Status)
	assert.Contains(t, o.Message, "no Chromium found")
}

// testPage logs an error, calls an API and opens a WebSocket, as the app does.
const testPage = `<!doctype html><html><body><h1 id="t">hello</h1><script>
console.error("boom", 42);
fetch("/data").then(r => r.text()).then(t => { document.getElementById("t").textContent = t });
new WebSocket("ws://" + location.host + "/sock/events");
</script></body></html>`

func TestPageRecordsWhatAPersonWouldSee(t *testing.T) {
	requireChromium(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte(testPage))
		case "/data":
			_, _ = w.Write([]byte("loaded"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	e := &Env{ResultsDir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bodies := 0
	o := browserCheck(Check{Name: "browser.test"}, func(ctx context.Context, e *Env, p *page) Outcome {
		bodies++
		status, err := p.open(srv.URL + "/")
		require.NoError(t, err)
		assert.EqualValues(t, 200, status)
		require.NoError(t, p.waitFor(`document.getElementById("t").textContent === "loaded"`, 10*time.Second))
		err = p.waitFor(`false`, 300*time.Millisecond)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "(waited 300ms)")
		// The page has logged an error: a check that ends with noProblems stops waiting.
		err = p.waitClean(`false`, time.Minute)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "when the page logged an error: console.error: boom 42")
		assert.NotContains(t, err.Error(), "waited")
		require.Eventually(t, func() bool {
			_, _, sockets := p.seen()
			return len(sockets) > 0
		}, 10*time.Second, 50*time.Millisecond)
		problems, requests, sockets := p.seen()
		assert.Contains(t, requests, srv.URL+"/data")
		assert.Equal(t, []string{"ws://" + strings.TrimPrefix(srv.URL, "http://") + "/sock/events"}, sockets)
		require.NotEmpty(t, problems)
		assert.Contains(t, problems[0], "console.error: boom 42")
		o, ok := p.noProblems()
		assert.False(t, ok)
		return o
	}).Run(ctx, e)

	assert.Equal(t, Fail, o.Status)
	assert.Equal(t, 1, bodies, "only a load aborted for a network change earns a new tab")
	assert.Contains(t, o.Message, "the page logged")
	assert.Contains(t, o.Details, "page text: loaded", "a failure shows what the page showed")
	assert.Contains(t, o.Details, "/data")
	require.Equal(t, []string{"screenshots/browser.test.png"}, o.Files)
	png, err := os.ReadFile(filepath.Join(e.ResultsDir, o.Files[0]))
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(png, []byte("\x89PNG\r\n")), "a PNG file")

	// Like the checks' HTTP client, the browser cannot leave loopback.
	p, done, err := e.newPage(ctx)
	require.NoError(t, err)
	_, err = p.open("http://10.255.255.1/")
	done()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ERR_NAME_NOT_RESOLVED")

	pids := chromiumPids(t)
	require.NotEmpty(t, pids, "the browser is running until the run ends")
	e.browser.close()
	require.Eventually(t, func() bool {
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil && !zombie(pid) {
				return false
			}
		}
		return true
	}, 10*time.Second, 100*time.Millisecond, "no Chromium process outlives the run")
}

// chromiumPids are the processes of browsers chromedp started (their profile directory is
// named chromedp-runner*).
func chromiumPids(t *testing.T) []int {
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	for _, en := range entries {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + en.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte("--user-data-dir=")) && bytes.Contains(b, []byte("chromedp-runner")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}

// TestBrowserKeepsNoOmniboxWebUI: the omnibox popups Chromium renders in a hidden window
// cost more CPU per page load than the checks' pages (disabledFeatures). A Chromium that
// renames the features brings them back silently; this says so instead.
func TestBrowserKeepsNoOmniboxWebUI(t *testing.T) {
	requireChromium(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<!doctype html><title>t</title><p>hello`))
	}))
	defer srv.Close()
	e := &Env{}
	defer e.browser.close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, done, err := e.newPage(ctx)
	require.NoError(t, err)
	defer done()
	_, err = p.open(srv.URL + "/")
	require.NoError(t, err)

	// Every target of the browser, the hidden browser UI included (the default filter
	// leaves out only "browser" and "tab").
	b := chromedp.FromContext(e.browser.ctx).Browser
	r, err := cdp.Call(ctx, b, target.GetTargets, target.GetTargetsParams{Filter: target.Filter{{}}})
	require.NoError(t, err)
	var pages, webui []string
	for _, ti := range r.TargetInfos {
		if strings.HasPrefix(ti.URL, "chrome://") {
			webui = append(webui, ti.Type+" "+ti.URL)
		}
		if ti.Type == "page" {
			pages = append(pages, ti.URL)
		}
	}
	assert.Contains(t, pages, srv.URL+"/", "the listing sees the checks' own tabs")
	assert.Empty(t, webui, "Chromium renders WebUI beside the pages: find the feature that loads it and add it to disabledFeatures")
}

// changeNetwork makes the change Docker makes when it creates a network: a new bridge
// with an address. It needs CAP_NET_ADMIN (CI runs as root); undo removes the bridge.
func changeNetwork() (undo func(), err error) {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	link := "kgcinc" + hex.EncodeToString(b)
	addr := fmt.Sprintf("10.254.%d.%d/32", b[0], b[1]|1)
	undo = func() { _ = exec.Command("ip", "link", "del", link).Run() }
	for _, args := range [][]string{
		{"link", "add", link, "type", "bridge"},
		{"addr", "add", addr, "dev", link},
		{"link", "set", link, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			undo()
			return func() {}, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return undo, nil
}

// TestBrowserCheckGetsANewTabWhenTheNetworkChanges: Chromium cancels loads in flight,
// loopback ones too, when any interface of the host changes, and the fault tests make
// Docker networks while other runs load pages. The check must not go red for that, and
// must say that it retried.
func TestBrowserCheckGetsANewTabWhenTheNetworkChanges(t *testing.T) {
	requireChromium(t)
	undo, err := changeNetwork()
	undo()
	if err != nil {
		msg := fmt.Sprintf("%v (this test changes the host's interfaces: run it as root)", err)
		if os.Getenv("KGCI_REQUIRE_CHROMIUM") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// Seven loads at once: Chromium opens six connections to one host and queues the
	// seventh, and a network change fails what is queued or connecting (the loads of a
	// page on a busy machine, in the fault tests).
	const loads = 7
	held := make(chan struct{}, loads)
	type change struct {
		undo func()
		err  error
	}
	changed := make(chan change, 1)
	var mu sync.Mutex
	networkDone := false
	go func() {
		for range loads - 1 {
			<-held
		}
		undo, err := changeNetwork()
		mu.Lock()
		networkDone = true
		mu.Unlock()
		changed <- change{undo, err}
	}()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/":
			w.Header().Set("Content-Type", "text/html")
			_, _ = fmt.Fprintf(w, `<!doctype html><title>t</title><script>
window.loaded = 0;
for (let i = 0; i < %d; i++) fetch("/load/" + i).then(r => r.text()).then(() => window.loaded++);
</script>`, loads)
		case strings.HasPrefix(r.URL.Path, "/load/"):
			mu.Lock()
			first := !networkDone
			mu.Unlock()
			if first {
				// The first tab's loads stay in flight until the tab is closed.
				held <- struct{}{}
				select {
				case <-r.Context().Done():
					return
				case <-time.After(30 * time.Second):
				}
			}
			_, _ = w.Write([]byte("ok"))
		case r.URL.Path == "/favicon.ico":
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	e := &Env{}
	defer e.browser.close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bodies := 0
	o := browserCheck(Check{Name: "browser.test"}, func(ctx context.Context, e *Env, p *page) Outcome {
		bodies++
		if _, err := p.open(srv.URL + "/"); err != nil {
			return failf("%v", err)
		}
		if err := p.waitFor(fmt.Sprintf(`window.loaded === %d`, loads), 30*time.Second); err != nil {
			return failf("the script did not run %s", err)
		}
		if o, ok := p.noProblems(); !ok {
			return o
		}
		return passf("loaded")
	}).Run(ctx, e)

	select {
	case c := <-changed:
		t.Cleanup(c.undo)
		require.NoError(t, c.err)
	case <-time.After(10 * time.Second):
		t.Fatalf("the page's first %d loads never reached the server together, so the network was not changed: %s", loads-1, o.Message)
	}
	assert.Equal(t, Pass, o.Status, "%s\n%s", o.Message, o.Details)
	assert.Equal(t, 2, bodies, "one new tab after the aborted one")
	assert.Contains(t, o.Message, "attempt 2")
	assert.Contains(t, o.Message, networkChanged)
	assert.Contains(t, o.Details, "attempt 1: ")
}
