package checks

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

// The browser.* checks open the frontend in headless Chromium as a person would: through
// nginx, on the images under test, with the page's own JavaScript, env-config.js, routing
// and WebSocket. An HTTP check can pass while the page renders nothing; these cannot.

// ChromiumEnv names the browser binary; without it kgci looks for Chromium on PATH.
const ChromiumEnv = "CHROMIUM_PATH"

// ScreenshotDir is where, under the results directory, each browser check leaves a
// picture of the page it judged (also when it fails: that is when one is most useful).
const ScreenshotDir = "screenshots"

// browserWait bounds each wait for the page; the check's own timeout covers the rest.
const browserWait = 15 * time.Second

// ChromiumPath finds the browser, or says how to get one.
func ChromiumPath() (string, error) {
	if p := os.Getenv(ChromiumEnv); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("%s=%s is not an executable Chromium (%v): point it at one, or unset it to search PATH", ChromiumEnv, p, err)
		}
		return p, nil
	}
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no Chromium found (looked for chromium, chromium-browser, google-chrome on PATH): the browser.* checks open the frontend in headless Chromium. Install it (Debian: apt-get install -y chromium; Alpine: apk add chromium) or set " + ChromiumEnv)
}

// disabledFeatures is Chromium's --disable-features. The first two are chromedp's
// defaults, which the flag would otherwise drop. The omnibox popups are WebUI pages
// (chrome://omnibox-popup.top-chrome/, and its AI-mode variant) that Chromium 156 keeps
// in a hidden window even when headless and re-renders after every navigation of any
// tab. That cost about 1.9 CPU-s per page load on a 2-core machine, more than our page
// itself, and none of it is the app's. Chromium ignores feature names it does not know,
// so an older or newer browser (the Dagger checker's Alpine one) starts all the same.
var disabledFeatures = []string{"Translate", "BlinkGenPropertyTrees", "WebUIOmniboxPopup", "WebUIOmniboxAimPopup"}

// browser is one Chromium per run, started by the first browser check; every check gets
// its own tab. Run closes it when the checks are done.
type browser struct {
	mu      sync.Mutex
	started bool
	err     error
	ctx     context.Context
	cancel  func()
}

// syncBuffer collects Chromium's output, which it writes from its own goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (b *browser) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return b.err
	}
	b.started = true
	path, err := ChromiumPath()
	if err != nil {
		b.err = err
		return err
	}
	out := &syncBuffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		// kgci runs as root in CI and in the Dagger checker, where Chromium's sandbox
		// cannot start; the pages are our own, served from loopback.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-features", strings.Join(disabledFeatures, ",")),
		// Like the checks' HTTP client, the browser reaches only what the run published on
		// loopback: every other name and address fails to resolve (IP literals too).
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"),
		chromedp.CombinedOutput(out),
	)
	// Not a check's context: the browser outlives the first check that needs it.
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	timer := time.AfterFunc(60*time.Second, bcancel)
	err = chromedp.Do(bctx)
	timer.Stop()
	if err != nil {
		bcancel()
		acancel()
		b.err = fmt.Errorf("could not start Chromium (%s): %v; its output:\n%s", path, err, dockerstack.Tail(out.String(), 20))
		return b.err
	}
	b.ctx, b.cancel = bctx, func() { bcancel(); acancel() }
	return nil
}

// close stops Chromium and its children (chromedp kills what still uses its profile).
func (b *browser) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cancel != nil {
		b.cancel()
	}
	b.started, b.err, b.ctx, b.cancel = false, nil, nil, nil
}

// page is one tab and what it saw: problems a person would see in the console, and every
// request and WebSocket the page made.
type page struct {
	ctx      context.Context
	mu       sync.Mutex
	problems []string
	requests []string // URLs of HTTP requests
	sockets  []string // URLs of WebSockets
}

// newPage opens a tab that lives until the returned function is called or ctx ends.
func (e *Env) newPage(ctx context.Context) (*page, func(), error) {
	if err := e.browser.start(); err != nil {
		return nil, func() {}, err
	}
	tctx, cancel := chromedp.NewContext(e.browser.ctx)
	// The check's deadline and Ctrl-C close the tab.
	stop := context.AfterFunc(ctx, cancel)
	done := func() { stop(); cancel() }
	p := &page{ctx: tctx}
	err := chromedp.Listen(tctx, func(ev any) {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			p.problems = append(p.problems, "uncaught exception: "+(&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range ev.Args {
					if a.Description != "" {
						parts = append(parts, a.Description)
					} else {
						parts = append(parts, strings.Trim(string(a.Value), `"`))
					}
				}
				p.problems = append(p.problems, "console.error: "+strings.Join(parts, " "))
			}
		case *cdplog.EventEntryAdded:
			// Failed loads and CSP violations arrive here.
			if ev.Entry.Level == cdplog.EntryLevelError {
				p.problems = append(p.problems, fmt.Sprintf("%s error: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		case *network.EventRequestWillBeSent:
			p.requests = append(p.requests, ev.Request.URL)
		case *network.EventWebSocketCreated:
			p.sockets = append(p.sockets, ev.URL)
		}
	})
	if err != nil {
		done()
		return nil, func() {}, fmt.Errorf("could not open a browser tab: %w", err)
	}
	return p, done, nil
}

func (p *page) seen() (problems, requests, sockets []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.problems), slices.Clone(p.requests), slices.Clone(p.sockets)
}

// open navigates and returns the HTTP status of the document.
func (p *page) open(u string) (int64, error) {
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(u))
	if err != nil {
		return 0, fmt.Errorf("opening %s: %w", u, err)
	}
	if resp == nil {
		return 0, nil
	}
	return resp.Status, nil
}

// eval evaluates a JavaScript expression into out (JSON-decoded).
func (p *page) eval(ctx context.Context, expr string, out any) error {
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr))
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// waitFor polls a JavaScript predicate until it is true; on timeout the error says how
// long it waited, for the check's message.
func (p *page) waitFor(pred string, within time.Duration) error {
	return p.wait(pred, within, false)
}

// waitClean is waitFor for the checks that end with noProblems: once the page has logged
// an error their verdict is red whatever it shows later, so the wait stops there instead
// of at its bound (a page the CSP blocks fails in a second, not in 15).
func (p *page) waitClean(pred string, within time.Duration) error {
	return p.wait(pred, within, true)
}

func (p *page) wait(pred string, within time.Duration, stopOnProblem bool) error {
	ctx, cancel := context.WithTimeout(p.ctx, within)
	defer cancel()
	t0 := time.Now()
	for {
		var ok bool
		err := p.eval(ctx, "Boolean("+pred+")", &ok)
		if err == nil && ok {
			return nil
		}
		problems, _, _ := p.seen()
		if stopOnProblem && len(problems) > 0 {
			return fmt.Errorf("(stopped after %s, when the page logged an error: %s)", time.Since(t0).Round(100*time.Millisecond), problems[0])
		}
		// The page lost some of its loads; browserCheck gives the check a new tab.
		if i := abortedLoad(problems); i >= 0 {
			return fmt.Errorf("(stopped after %s, when Chromium aborted a load: %s)", time.Since(t0).Round(100*time.Millisecond), problems[i])
		}
		select {
		case <-ctx.Done():
			if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("(waited %s; last error: %v)", within, err)
			}
			return fmt.Errorf("(waited %s)", within)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// text is the page's visible text, shortened, for messages.
func (p *page) text() string {
	ctx, cancel := context.WithTimeout(p.ctx, 3*time.Second)
	defer cancel()
	var s string
	if err := p.eval(ctx, `(document.body && document.body.innerText) || (document.documentElement && document.documentElement.outerHTML) || ''`, &s); err != nil {
		return "(could not read the page: " + err.Error() + ")"
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

// screenshot saves the whole page as PNG under the results directory and returns its path
// relative to it ("" when it could not be taken; a missing picture must not hide the
// check's own verdict).
func (p *page) screenshot(e *Env, name string) string {
	if e.ResultsDir == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return ""
	}
	rel := filepath.Join(ScreenshotDir, name+".png")
	if err := os.MkdirAll(filepath.Join(e.ResultsDir, ScreenshotDir), 0o755); err != nil {
		return ""
	}
	if err := os.WriteFile(filepath.Join(e.ResultsDir, rel), png, 0o644); err != nil {
		return ""
	}
	return rel
}

// browserCheck makes c run body in a fresh tab and attach the screenshot (named after the
// check) and, on failure, what the page showed and logged. An attempt whose loads
// Chromium aborted because the host's network changed is run again in a new tab (see
// networkChanged).
func browserCheck(c Check, body func(ctx context.Context, e *Env, p *page) Outcome) Check {
	name := c.Name
	c.usesBrowser = true
	c.Run = func(ctx context.Context, e *Env) Outcome {
		var aborted []string
		for attempt := 1; ; attempt++ {
			o, changed := runInTab(ctx, e, name, body)
			if !changed || attempt == browserAttempts || ctx.Err() != nil {
				return noteAborted(o, aborted)
			}
			aborted = append(aborted, o.Message)
		}
	}
	return c
}

// browserAttempts bounds the new tabs a check gets for ERR_NETWORK_CHANGED: a network
// that keeps changing for that long is worth a red check that says so.
const browserAttempts = 3

// networkChanged is how Chromium reports a load it cancelled because the host's network
// interfaces changed. On Linux it watches every interface and address over netlink and
// aborts requests in flight, loopback ones too, when any of them changes: Docker making
// a bridge or a veth for another run (the fault tests start stacks in parallel) is
// enough. A person's browser would simply load the page again; the app is not at fault.
const networkChanged = "net::ERR_NETWORK_CHANGED"

// abortedLoad is the index of the first problem that is a load aborted for a network
// change, or -1.
func abortedLoad(problems []string) int {
	return slices.IndexFunc(problems, func(s string) bool { return strings.Contains(s, networkChanged) })
}

// runInTab runs one attempt of a browser check and says whether Chromium aborted a load
// for a network change during it.
func runInTab(ctx context.Context, e *Env, name string, body func(ctx context.Context, e *Env, p *page) Outcome) (Outcome, bool) {
	p, done, err := e.newPage(ctx)
	if err != nil {
		return failf("%v", err), false
	}
	defer done()
	o := body(ctx, e, p)
	// A body that took its picture at the moment that matters keeps it.
	if len(o.Files) == 0 {
		if shot := p.screenshot(e, name); shot != "" {
			o.Files = append(o.Files, shot)
		}
	}
	problems, requests, sockets := p.seen()
	changed := o.Status != Pass && (strings.Contains(o.Message, networkChanged) || abortedLoad(problems) >= 0)
	if o.Status != Pass {
		var ev []string
		if o.Details != "" {
			ev = append(ev, o.Details)
		}
		ev = append(ev, "page text: "+p.text())
		if len(problems) > 0 {
			ev = append(ev, "console:\n  "+strings.Join(problems, "\n  "))
		}
		if len(requests) > 0 {
			ev = append(ev, "requests:\n  "+strings.Join(requests, "\n  "))
		}
		if len(sockets) > 0 {
			ev = append(ev, "websockets:\n  "+strings.Join(sockets, "\n  "))
		}
		o.Details = strings.Join(ev, "\n")
	}
	return o, changed
}

// noteAborted says in the verdict that earlier tabs were given up, and why, so that a
// check that passed on its second tab does not look like one that passed at once.
func noteAborted(o Outcome, aborted []string) Outcome {
	if len(aborted) == 0 {
		return o
	}
	o.Message += fmt.Sprintf(" (attempt %d: in the %d before it Chromium aborted loads with %s, because the host's network interfaces changed, e.g. Docker made a network for another run; a person would reload)",
		len(aborted)+1, len(aborted), networkChanged)
	var ev []string
	for i, m := range aborted {
		ev = append(ev, fmt.Sprintf("attempt %d: %s", i+1, m))
	}
	if o.Details != "" {
		ev = append(ev, o.Details)
	}
	o.Details = strings.Join(ev, "\n")
	return o
}

// noProblems fails when the page logged errors a person would see in the console.
func (p *page) noProblems() (Outcome, bool) {
	problems, _, _ := p.seen()
	if len(problems) > 0 {
		return failf("the page logged %d error(s), first: %s", len(problems), problems[0]), false
	}
	return Outcome{}, true
}

// apiBase is where the browser checks take what the page should show: the backend itself
// when the run has it, so that nginx's part is judged by the browser alone.
func (e *Env) apiBase() string {
	if e.BackendURL != "" {
		return e.BackendURL
	}
	return e.FrontendURL
}

// apiGenes is the first page of /api/genes as the app asks for it (frontend/src/api.js).
type apiGenes struct {
	Items []struct {
		Symbol string `json:"symbol"`
	} `json:"items"`
	Total int `json:"total"`
}

const rowSymbols = `[...document.querySelectorAll('[data-testid="gene-row"]')].map(r => r.dataset.symbol)`

var browserGenes = browserCheck(Check{
	Name:    "browser.genes",
	URL:     dockerstack.Frontend,
	Needs:   []string{dockerstack.Backend, dockerstack.Frontend},
	Timeout: 45 * time.Second,
}, func(ctx context.Context, e *Env, p *page) Outcome {
	api := e.apiBase() + "/api/genes?page=1&page_size=25&sort=symbol"
	r, err := e.get(ctx, api, map[string]string{"Accept": "application/json"})
	if err != nil {
		return failf("%v", err)
	}
	var want apiGenes
	if r.StatusCode != 200 || json.Unmarshal(r.Body, &want) != nil || len(want.Items) == 0 {
		return failf("GET %s returned %d, not a list of genes: health.backend_direct says whether the API is up", api, r.StatusCode).with(snippet(r.Body))
	}
	var symbols []string
	for _, it := range want.Items {
		symbols = append(symbols, it.Symbol)
	}
	wantJS, _ := json.Marshal(symbols)
	if _, err := p.open(e.FrontendURL + "/"); err != nil {
		return failf("%v", err)
	}
	if err := p.waitClean("JSON.stringify("+rowSymbols+") === "+strconvQuote(string(wantJS)), browserWait); err != nil {
		var got []string
		_ = p.eval(p.ctx, rowSymbols, &got)
		return failf("the gene table did not show the API's genes %s: it shows %d row(s) %v, the API's first page has %d (%s). The page's text and console are below",
			err, len(got), first(got, 5), len(symbols), strings.Join(first(symbols, 5), ", "))
	}
	var env map[string]string
	if err := p.eval(p.ctx, `window._env_ || null`, &env); err != nil || env["API_BASE_URL"] == "" {
		return failf("the page has no window._env_: /env-config.js did not run before the bundle (index.html must load it first; docker-entrypoint.sh writes it)")
	}
	if o, ok := p.noProblems(); !ok {
		return o
	}
	return passf("the gene table shows the API's first page (%d genes, %s ... %s) through nginx, with window._env_ API_BASE_URL=%s; no console errors",
		len(symbols), symbols[0], symbols[len(symbols)-1], env["API_BASE_URL"])
})

// apiGene is /api/genes/<symbol>.
type apiGene struct {
	Symbol   string            `json:"symbol"`
	Name     string            `json:"name"`
	Evidence []json.RawMessage `json:"evidence"`
}

// deepLinkSymbol is a gene the seed data always has.
const deepLinkSymbol = "PKD1"

var browserDeepLink = browserCheck(Check{
	Name:    "browser.deep_link",
	URL:     dockerstack.Frontend,
	Needs:   []string{dockerstack.Backend, dockerstack.Frontend},
	Timeout: 45 * time.Second,
}, func(ctx context.Context, e *Env, p *page) Outcome {
	want, o, ok := e.gene(ctx, deepLinkSymbol)
	if !ok {
		return o
	}
	// Opened directly, as a shared link is: nginx must answer index.html for a path
	// that is no file, and the app must route it.
	u := e.FrontendURL + "/genes/" + deepLinkSymbol
	status, err := p.open(u)
	if err != nil {
		return failf("%v", err)
	}
	if status != 200 {
		return failf("nginx answered %d for the deep link %s: the SPA fallback (`try_files $uri $uri/ /index.html;` in nginx.prod.conf `location /`) must serve the app for client-side routes", status, u)
	}
	pred := fmt.Sprintf(`(document.querySelector('[data-testid="gene-symbol"]')?.textContent.trim() === %s) && document.querySelectorAll('[data-testid="evidence-item"]').length === %d`,
		strconvQuote(want.Symbol), len(want.Evidence))
	if err := p.waitClean(pred, browserWait); err != nil {
		return failf("the deep link %s did not show %s with its %d evidence item(s) %s: the page shows %q", u, want.Symbol, len(want.Evidence), err, p.text())
	}
	if o, ok := p.noProblems(); !ok {
		return o
	}
	return passf("%s opened directly shows %s (%s) with its %d evidence item(s), as the API has them", u, want.Symbol, want.Name, len(want.Evidence))
})

func (e *Env) gene(ctx context.Context, symbol string) (apiGene, Outcome, bool) {
	var g apiGene
	u := e.apiBase() + "/api/genes/" + url.PathEscape(symbol)
	r, err := e.get(ctx, u, map[string]string{"Accept": "application/json"})
	if err != nil {
		return g, failf("%v", err), false
	}
	if r.StatusCode != 200 || json.Unmarshal(r.Body, &g) != nil || g.Symbol != symbol {
		return g, failf("GET %s returned %d, not the gene %s: the seed data or the API changed", u, r.StatusCode, symbol).with(snippet(r.Body)), false
	}
	return g, Outcome{}, true
}

// psql runs SQL in the database container as the application's user.
func (e *Env) psql(ctx context.Context, sql string) (string, error) {
	c, ok := e.Stack.Container(dockerstack.Postgres)
	if !ok {
		return "", errors.New("no postgres container")
	}
	res, err := e.Stack.D.Exec(ctx, c, "psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-U", dockerstack.DBUser, "-d", dockerstack.DBName, "-c", sql)
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("psql exited %d: %s", res.ExitCode, res.Output())
	}
	return strings.TrimSpace(res.Stdout), nil
}

var browserLiveUpdate = browserCheck(Check{
	Name:    "browser.live_update",
	Docker:  true,
	Needs:   []string{dockerstack.Postgres, dockerstack.Backend, dockerstack.Frontend},
	Timeout: 50 * time.Second,
}, func(ctx context.Context, e *Env, p *page) Outcome {
	// Got to as a person gets there: the start page, then the gene's link (client-side
	// routing), so that this check does not also judge the deep link.
	start := e.FrontendURL + "/"
	status, err := p.open(start)
	if err != nil {
		return failf("%v", err)
	}
	if status != 200 {
		return failf("nginx answered %d for the start page %s", status, start)
	}
	link := fmt.Sprintf(`document.querySelector('[data-testid="gene-row"][data-symbol="%s"] a')`, deepLinkSymbol)
	if err := p.waitFor(link, browserWait); err != nil {
		return failf("the gene table never showed a link to %s %s; browser.genes judges the table", deepLinkSymbol, err)
	}
	if err := p.eval(p.ctx, link+".click(), true", new(bool)); err != nil {
		return failf("could not click the link to %s: %v", deepLinkSymbol, err)
	}
	view := fmt.Sprintf(`location.pathname === '/genes/%s' && document.querySelector('[data-testid="gene-name"]')`, deepLinkSymbol)
	if err := p.waitFor(view, browserWait); err != nil {
		return failf("clicking %s in the gene table did not open its page at /genes/%s %s", deepLinkSymbol, deepLinkSymbol, err)
	}
	// From here on a logged error ends the wait: the WebSocket's failure is logged as
	// one, and the table and the gene page above, which browser.genes and
	// browser.deep_link judge, have shown by now.
	if err := p.waitClean(`document.querySelector('[data-testid="live-indicator"]')?.dataset.status === 'connected'`, browserWait); err != nil {
		var live string
		_ = p.eval(p.ctx, `document.querySelector('[data-testid="live-indicator"]')?.dataset.status || 'absent'`, &live)
		return failf("the page's WebSocket did not connect %s (live indicator: %s): the browser reaches the backend's /ws/events through nginx `location /ws/`; websocket.upgrade tests the handshake alone", err, live)
	}
	// A marker only this run writes; the name is put back afterwards, so the other
	// checks and a rerun see the seed data.
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	marker := " [kgci " + hex.EncodeToString(b) + "]"
	sym := sqlQuote(deepLinkSymbol)
	t0 := time.Now()
	if _, err := e.psql(ctx, "UPDATE genes SET name = name || "+sqlQuote(marker)+" WHERE approved_symbol = "+sym); err != nil {
		return failf("could not change %s in the database: %v", deepLinkSymbol, err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = e.psql(rctx, "UPDATE genes SET name = replace(name, "+sqlQuote(marker)+", '') WHERE approved_symbol = "+sym)
	}()
	shown := fmt.Sprintf(`document.querySelector('[data-testid="gene-name"]')?.textContent.includes(%s)`, strconvQuote(marker))
	event := fmt.Sprintf(`/gene_updated %s/.test(document.querySelector('[data-testid="live-last-event"]')?.textContent || '')`, deepLinkSymbol)
	if err := p.waitClean(shown+" && "+event, browserWait); err != nil {
		var got struct {
			Event, Name string
		}
		_ = p.eval(p.ctx, `({event: document.querySelector('[data-testid="live-last-event"]')?.textContent || '', name: document.querySelector('[data-testid="gene-name"]')?.textContent || ''})`, &got)
		if strings.TrimSpace(got.Event) == "" {
			return failf("a change to %s in the database never reached the page %s: no event arrived over the WebSocket (the backend LISTENs for the genes trigger's NOTIFY and pushes it to /ws/events; nginx must pass the upgrade)", deepLinkSymbol, err)
		}
		return failf("the page got the event %q but did not show the new name %s (shows %q): the gene view must reload on a live event", strings.TrimSpace(got.Event), err, got.Name)
	}
	took := time.Since(t0)
	// Before the name is put back (which the page would show too).
	shot := p.screenshot(e, "browser.live_update")
	if o, ok := p.noProblems(); !ok {
		return o
	}
	o := passf("a change to %s written to the database (docker exec psql) showed on the open page %.1fs after the write began, pushed over the WebSocket through nginx", deepLinkSymbol, took.Seconds())
	if shot != "" {
		o.Files = []string{shot}
	}
	return o
})

var browserCustomURLs = browserCheck(Check{
	Name:       "browser.custom_urls",
	Docker:     true,
	Slow:       true,
	usesCustom: true,
	Needs:      []string{dockerstack.Frontend},
	Timeout:    50 * time.Second,
}, func(ctx context.Context, e *Env, p *page) Outcome {
	// Relative paths: the page's CSP allows connections to its own origin only, and
	// which paths the bundle asks for is what shows whether it read window._env_.
	v, o, ok := e.customFrontend(ctx)
	if !ok {
		return o
	}
	if _, err := p.open(v.base + "/"); err != nil {
		return failf("%v", err)
	}
	apiPrefix, wsPath := v.base+"/custom-api/genes", "/custom-ws/events"
	deadline := time.Now().Add(browserWait)
	var reqs, socks []string
	for {
		_, reqs, socks = p.seen()
		if countPrefix(reqs, apiPrefix) > 0 && countSuffix(socks, wsPath) > 0 {
			break
		}
		// A call to a default is red whatever follows (below): no need to wait for the bound.
		nAPI, nWS := countPrefix(reqs, v.base+"/api/"), countSuffix(socks, "/ws/events")
		timedOut := time.Now().After(deadline) || ctx.Err() != nil
		if nAPI+nWS > 0 || timedOut {
			how := "within " + browserWait.String()
			if !timedOut {
				how = fmt.Sprintf("but called the defaults (%d request(s) under /api/, %d WebSocket(s) to /ws/events)", nAPI, nWS)
			}
			return failf("a frontend started with API_BASE_URL=/custom-api WS_URL=/custom-ws did not use them %s (requests under /custom-api/: %d, WebSockets to /custom-ws/events: %d): the bundle must take its URLs from window._env_ (env-config.js, written by docker-entrypoint.sh at start), not from build-time values",
				how, countPrefix(reqs, v.base+"/custom-api/"), countSuffix(socks, wsPath))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := countPrefix(reqs, v.base+"/api/"); n > 0 || countSuffix(socks, "/ws/events") > 0 {
		return failf("a frontend started with custom URLs still called the defaults (%d request(s) under /api/, %d WebSocket(s) to /ws/events): some code path ignores window._env_", n, countSuffix(socks, "/ws/events"))
	}
	if err := p.waitFor(`document.querySelector('[data-testid="environment"]')?.textContent.trim() === 'staging'`, 5*time.Second); err != nil {
		return failf("ENVIRONMENT=staging is not shown on the page %s: the header shows window._env_.ENVIRONMENT", err)
	}
	return passf("a frontend started with API_BASE_URL=/custom-api WS_URL=/custom-ws ENVIRONMENT=staging requested %s?... and opened a WebSocket to %s (seen in the browser's network events), never the defaults",
		"/custom-api/genes", wsPath)
})

func countPrefix(l []string, prefix string) int {
	return count(l, func(s string) bool { return strings.HasPrefix(s, prefix) })
}

func countSuffix(l []string, suffix string) int {
	return count(l, func(s string) bool { return strings.HasSuffix(s, suffix) })
}

func count(l []string, match func(string) bool) int {
	n := 0
	for _, s := range l {
		if match(s) {
			n++
		}
	}
	return n
}

func first(l []string, n int) []string {
	if len(l) > n {
		return append(l[:n:n], "...")
	}
	return l
}

// strconvQuote is a JavaScript string literal (JSON's quoting is valid JavaScript).
func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// sqlQuote is an SQL string literal.
func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
