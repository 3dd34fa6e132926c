package checks

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/policy"
)

// frontendVariant is one more frontend container from the image under test, with other
// runtime settings.
type frontendVariant struct {
	name string
	base string // http://127.0.0.1:PORT
	stop func()
}

// startFrontendVariant starts it on the proxy-side network with a loopback port, under the
// same security options as the real frontend. The backend's alias resolves there too, so
// nginx's upstream loads as in the real frontend; an internal-only container could not
// publish a port.
func (e *Env) startFrontendVariant(ctx context.Context, s *dockerstack.Stack, suffix string, env map[string]string) (*frontendVariant, Outcome, bool) {
	svc, err := s.Compose.Service(dockerstack.Frontend)
	if err != nil {
		return nil, failf("%v", err), false
	}
	name := s.Name(suffix)
	args := []string{"run", "-d"}
	args = append(args, s.RunArgs(suffix, suffix)...)
	args = append(args, "--network", s.ProxyNetwork(), "-p", "127.0.0.1::8080")
	args = append(args, svc.SecurityArgs()...)
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-e", k+"="+env[k])
	}
	args = append(args, s.Images[dockerstack.Frontend])
	stop := func() {
		rctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, _ = s.D.Run(rctx, "rm", "-f", name)
	}
	if _, err := s.D.Run(ctx, args...); err != nil {
		stop()
		return nil, failf("could not start a second frontend container: %v", err), false
	}
	hp, err := s.HostPort(ctx, name, 8080)
	if err != nil {
		stop()
		return nil, failf("%v", err), false
	}
	v := &frontendVariant{name: name, base: "http://" + hp, stop: stop}
	// Returned once nginx answers, so callers judge what it serves, not its start.
	for {
		r, err := e.get(ctx, v.base+"/health", nil)
		if err == nil && r.StatusCode == 200 {
			return v, Outcome{}, true
		}
		if ctx.Err() != nil {
			logs, _ := s.D.Logs(context.Background(), name, 30)
			stop()
			if err == nil {
				err = fmt.Errorf("status %d", r.StatusCode)
			}
			return nil, failf("the frontend started with %v never answered /health: %v", env, err).with(logs), false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// customEnv are the non-default runtime settings env_injection and browser.custom_urls
// start a frontend with. Relative paths: the page's CSP allows connections to its own
// origin only, and which paths the bundle asks for shows whether it read window._env_.
var customEnv = map[string]string{"API_BASE_URL": "/custom-api", "WS_URL": "/custom-ws", "ENVIRONMENT": "staging"}

// sharedVariant is the frontend started with customEnv: one container serves both checks
// (they only read from it), started by whichever asks first, removed when the run's checks
// end.
type sharedVariant struct {
	mu      sync.Mutex
	started bool
	v       *frontendVariant
	o       Outcome
	ok      bool
}

func (e *Env) customFrontend(ctx context.Context) (*frontendVariant, Outcome, bool) {
	return e.customFrontendOn(ctx, e.Stack)
}

// customFrontendOn takes the stack as an argument: WarmUp starts the container before
// Up has returned the stack (and before e.Stack is set).
func (e *Env) customFrontendOn(ctx context.Context, st *dockerstack.Stack) (*frontendVariant, Outcome, bool) {
	s := &e.custom
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started = true
		s.v, s.o, s.ok = e.startFrontendVariant(ctx, st, "frontend-custom", customEnv)
	}
	return s.v, s.o, s.ok
}

func (s *sharedVariant) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v != nil {
		s.v.stop()
	}
	s.started, s.v, s.o, s.ok = false, nil, Outcome{}, false
}

// envInjection reads the frontend started with customEnv (one more container): the
// same image must serve them in /env-config.js, with no rebuild, and uncached as
// ci/policy/architecture.yaml (frontend_http.env_config_cache_control) asks.
var envInjection = Check{
	Name:       "env_injection",
	Docker:     true,
	Slow:       true,
	usesCustom: true,
	Needs:      []string{dockerstack.Frontend},
	Timeout:    40 * time.Second,
	Run: func(ctx context.Context, e *Env) Outcome {
		want := customEnv
		v, o, ok := e.customFrontend(ctx)
		if !ok {
			return o
		}
		base, name := v.base, v.name
		var cfg map[string]string
		var r *response
		var err error
		for {
			cfg, r, err = e.fetchEnvConfig(ctx, base)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				logs, _ := e.Docker().Logs(context.Background(), name, 30)
				return failf("the frontend started with %v never served /env-config.js: %v", want, err).with(logs)
			}
			time.Sleep(200 * time.Millisecond)
		}
		for k, v := range want {
			if cfg[k] != v {
				return failf("started with %s=%q, the served /env-config.js has %s=%q: docker-entrypoint.sh must write the runtime environment into env-config.js at every start", k, v, k, cfg[k]).with(string(r.Body))
			}
		}
		p, err := policy.Architecture()
		if err != nil {
			return failf("%v", err)
		}
		cc := r.Header.Get("Cache-Control")
		if missing := p.CacheControlMissing(cc); len(missing) > 0 {
			return failf("/env-config.js has Cache-Control %q, without %s; the architecture asks for %s (ci/policy/architecture.yaml frontend_http.env_config_cache_control): set it in nginx.prod.conf `location = /env-config.js`, or browsers keep an old API/WS location",
				cc, strings.Join(missing, ", "), strings.Join(p.FrontendHTTP.EnvConfigCacheControl, ", "))
		}
		return passf("a frontend started with API_BASE_URL=/custom-api WS_URL=/custom-ws ENVIRONMENT=staging serves exactly those in /env-config.js, Cache-Control %q", cc)
	},
}

var scriptSrc = regexp.MustCompile(`<script[^>]+src="(/assets/[^"]+\.js)"`)

// gzipAssets checks that nginx compresses what the architecture's gzip_types list
// (ci/policy/architecture.yaml frontend_http): the JS bundle (static) and JSON from the API
// (proxied; needs gzip_proxied), each of a type the policy names.
var gzipAssets = Check{
	Name:  "gzip.assets",
	Needs: []string{dockerstack.Frontend, dockerstack.Backend},
	URL:   dockerstack.Frontend,
	Run: func(ctx context.Context, e *Env) Outcome {
		p, err := policy.Architecture()
		if err != nil {
			return failf("%v", err)
		}
		idx, err := e.get(ctx, e.FrontendURL+"/", nil)
		if err != nil {
			return failf("GET %s/: %v", e.FrontendURL, err)
		}
		m := scriptSrc.FindSubmatch(idx.Body)
		if m == nil {
			return failf("index.html names no /assets/*.js bundle: %s", snippet(idx.Body))
		}
		var notes []string
		for _, target := range []struct{ path, kind string }{
			{string(m[1]), "JS bundle"},
			{"/api/genes?page_size=100", "API JSON"},
		} {
			u := e.FrontendURL + target.path
			r, err := e.get(ctx, u, map[string]string{"Accept-Encoding": "gzip"})
			if err != nil {
				return failf("GET %s: %v", u, err)
			}
			if r.StatusCode != 200 {
				return failf("GET %s (%s) returned %d", u, target.kind, r.StatusCode).with(string(r.Body))
			}
			ct := r.Header.Get("Content-Type")
			if !p.Gzipped(ct) {
				return failf("GET %s (%s) is served as %q, which is not among the architecture's gzip_types (ci/policy/architecture.yaml frontend_http.gzip_types): serve it with a type the policy lists (nginx's mime.types, the backend's response class), or add the type to the policy and to gzip_types in nginx.prod.conf", u, target.kind, ct)
			}
			if ce := r.Header.Get("Content-Encoding"); ce != "gzip" {
				hint := "gzip it: nginx.prod.conf needs `gzip on` and " + ct + " in gzip_types, as ci/policy/architecture.yaml frontend_http.gzip_types lists it"
				if strings.HasPrefix(target.path, "/api/") {
					hint = "proxied responses need `gzip_proxied any` and application/json in gzip_types (ci/policy/architecture.yaml frontend_http.gzip_types lists it); bodies under gzip_min_length are never compressed"
				}
				return failf("GET %s (%s, %s, %d bytes) with Accept-Encoding: gzip came back with Content-Encoding %q: %s", u, target.kind, ct, len(r.Body), ce, hint)
			}
			zr, err := gzip.NewReader(bytes.NewReader(r.Body))
			if err != nil {
				return failf("GET %s: Content-Encoding gzip but the body is not gzip: %v", u, err)
			}
			plain, err := io.ReadAll(zr)
			if err != nil {
				return failf("GET %s: corrupt gzip body: %v", u, err)
			}
			if !strings.Contains(r.Header.Get("Vary"), "Accept-Encoding") {
				return failf("GET %s is gzipped without `Vary: Accept-Encoding`: caches would serve gzip to clients that cannot read it (gzip_vary on)", u)
			}
			notes = append(notes, fmt.Sprintf("%s (%s) %d -> %d bytes", target.kind, ct, len(plain), len(r.Body)))
		}
		return passf("Content-Encoding: gzip with Vary: Accept-Encoding, as frontend_http.gzip_types asks: %s", strings.Join(notes, ", "))
	},
}
