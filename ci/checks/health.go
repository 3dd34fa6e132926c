package checks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

type apiHealth struct {
	Status   string `json:"status"`
	Database string `json:"database"`
	Detail   string `json:"detail"`
}

// checkAPIHealth GETs base+/api/health and requires {"status":"ok","database":"connected"}.
func (e *Env) checkAPIHealth(ctx context.Context, base, via string) Outcome {
	u := base + "/api/health"
	r, err := e.get(ctx, u, nil)
	if err != nil {
		return failf("GET %s (%s) failed: %v; is the container running and its port published?", u, via, err)
	}
	var h apiHealth
	jerr := json.Unmarshal(r.Body, &h)
	switch {
	case r.StatusCode == 502 || r.StatusCode == 504:
		return failf("GET %s returned %d: nginx cannot reach the backend; the upstream in nginx.prod.conf (kidney_genetics_backend:8000) must resolve to the backend on the shared network", u, r.StatusCode).with(string(r.Body))
	case r.StatusCode == 503 && h.Database != "":
		return failf("GET %s returned 503, database %q (%s): the backend cannot reach PostgreSQL; check DATABASE_URL and the postgres container", u, h.Database, h.Detail).with(string(r.Body))
	case r.StatusCode != 200:
		return failf("GET %s returned %d, want 200", u, r.StatusCode).with(string(r.Body))
	case jerr != nil:
		return failf("GET %s: body is not JSON (%v): %s", u, jerr, snippet(r.Body))
	case h.Status != "ok" || h.Database != "connected":
		return failf(`GET %s: want {"status":"ok","database":"connected"}, got %s`, u, snippet(r.Body))
	}
	return passf(`GET %s (%s): 200 {"status":"ok","database":"connected"}`, u, via)
}

var healthBackendDirect = Check{
	Name:  "health.backend_direct",
	Needs: []string{dockerstack.Backend},
	URL:   dockerstack.Backend,
	Run: func(ctx context.Context, e *Env) Outcome {
		return e.checkAPIHealth(ctx, e.BackendURL, "backend directly")
	},
}

var healthThroughNginx = Check{
	Name:  "health.through_nginx",
	Needs: []string{dockerstack.Frontend, dockerstack.Backend},
	URL:   dockerstack.Frontend,
	Run: func(ctx context.Context, e *Env) Outcome {
		return e.checkAPIHealth(ctx, e.FrontendURL, "through the frontend's nginx")
	},
}

var healthFrontend = Check{
	Name:  "health.frontend",
	Needs: []string{dockerstack.Frontend},
	URL:   dockerstack.Frontend,
	Run: func(ctx context.Context, e *Env) Outcome {
		u := e.FrontendURL + "/health"
		r, err := e.get(ctx, u, nil)
		if err != nil {
			return failf("GET %s failed: %v", u, err)
		}
		if r.StatusCode != 200 {
			return failf("GET %s returned %d, want 200 from nginx.prod.conf's `location = /health`", u, r.StatusCode).with(string(r.Body))
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			return failf("GET %s: Content-Type %q, want application/json (default_type application/json in `location = /health`)", u, ct)
		}
		var h struct{ Status, Service string }
		if err := json.Unmarshal(r.Body, &h); err != nil || h.Status != "healthy" {
			return failf(`GET %s: want JSON {"status":"healthy",...}, got %s`, u, snippet(r.Body))
		}
		return passf("GET %s: 200 %s", u, snippet(r.Body))
	},
}

// healthDatabaseDown stops PostgreSQL under the running backend, then starts it again: the
// backend must report the loss as a 503 (not hang, not 500) and recover without a restart.
var healthDatabaseDown = Check{
	Name:        "health.database_down",
	Docker:      true,
	URL:         dockerstack.Backend,
	Needs:       []string{dockerstack.Postgres, dockerstack.Backend},
	Destructive: true,
	Timeout:     90 * time.Second,
	Run: func(ctx context.Context, e *Env) (out Outcome) {
		s := e.Stack
		pg, _ := s.Container(dockerstack.Postgres)
		u := e.BackendURL + "/api/health"
		t0 := time.Now()
		if err := s.StopService(ctx, dockerstack.Postgres, 5*time.Second); err != nil {
			return failf("could not stop postgres: %v", err)
		}
		restarted := false
		defer func() {
			if restarted {
				return
			}
			// Leave the stack as found, whatever happened above.
			rctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			if err := s.StartService(rctx, dockerstack.Postgres, 30*time.Second); err != nil {
				out.Message += fmt.Sprintf("; restarting postgres also failed: %v", err)
			}
		}()
		stopped := time.Since(t0)

		down, last := e.pollGet(ctx, u, 15*time.Second, func(r *response) bool { return r.StatusCode != 200 })
		if down == nil {
			return failf("with postgres stopped, GET %s still answered %s after 15s: /api/health must check the database on every call and return 503 when it is unreachable", u, last)
		}
		var h apiHealth
		if err := json.Unmarshal(down.Body, &h); err != nil || h.Database != "unreachable" {
			return failf(`with postgres stopped, GET %s returned %d %s; want 503 with "database":"unreachable"`, u, down.StatusCode, snippet(down.Body))
		}
		if down.StatusCode != 503 {
			return failf("with postgres stopped, GET %s returned %d; want 503 (Service Unavailable), which proxies and clients treat as retryable", u, down.StatusCode)
		}
		noticed := time.Since(t0) - stopped

		t1 := time.Now()
		if _, err := s.D.Run(ctx, "start", pg); err != nil {
			return failf("could not start postgres again: %v", err)
		}
		restarted = true
		// The backend checks the database on every call, so it is asked directly: it says
		// "connected" as soon as postgres accepts connections, up to a probe interval
		// before Docker calls postgres healthy. Docker's verdict is awaited beside it, to
		// tell "postgres never came back" from "the backend did not reconnect".
		pctx, stopPoll := context.WithCancel(ctx)
		defer stopPoll()
		pgDone := make(chan error, 1)
		go func() {
			err := s.WaitHealthy(pctx, dockerstack.Postgres, 30*time.Second)
			if err != nil && pctx.Err() == nil {
				stopPoll()
			}
			pgDone <- err
		}()
		up, last := e.pollGet(pctx, u, 30*time.Second, func(r *response) bool {
			var h apiHealth
			return r.StatusCode == 200 && json.Unmarshal(r.Body, &h) == nil && h.Database == "connected"
		})
		if up != nil {
			return passf("postgres stopped in %.1fs; backend answered 503 database unreachable %.1fs later; after postgres was started again it answered \"connected\" %.1fs later",
				stopped.Seconds(), noticed.Seconds(), time.Since(t1).Seconds())
		}
		if err := <-pgDone; err != nil && ctx.Err() == nil {
			return failf("postgres did not come back after the restart: %v", err)
		}
		return failf("postgres is healthy again, but GET %s still answers %s %.0fs after its restart: the backend must reconnect by itself (discard dead pool connections)", u, last, time.Since(t1).Seconds())
	},
}

// healthcheckImage runs the container's HEALTHCHECK command itself, inside the running
// container, so that a wrong path, a wrong port or a missing tool shows up with the
// command's own output instead of as a service that "never becomes healthy".
func healthcheckImage(svc string) Check {
	return Check{
		Name:         "healthcheck.image_" + svc,
		Docker:       true,
		NeedsRunning: []string{svc},
		Timeout:      20 * time.Second,
		Run: func(ctx context.Context, e *Env) Outcome {
			name, _ := e.Stack.Container(svc)
			info, err := e.Docker().Inspect(ctx, name)
			if err != nil {
				return failf("docker inspect %s: %v", name, err)
			}
			hc := info.Config.Healthcheck
			p, err := e.Docker().Probe(ctx, name, hc)
			switch {
			case errors.Is(err, dockerstack.ErrNoHealthcheck):
				return failf("the %s image has no HEALTHCHECK; set Config.Healthcheck in ci/spec/images.go", svc)
			case err != nil:
				return failf("could not run HEALTHCHECK %q: %v", hc.Test, err)
			case p.TimedOut:
				return failf("HEALTHCHECK %q did not finish within its own timeout (%s): the probe hangs; is the port right?", hc.Test, p.Timeout)
			case p.ExitCode != 0:
				hint := "the probe's URL, path or port is wrong, or the service reports itself unhealthy"
				if p.ExitCode == 126 || p.ExitCode == 127 || strings.Contains(p.Output, "executable file not found") {
					hint = "the probe's tool is not in the image: install it in the runtime stage (ci/spec/images.go) or use a tool the image has"
				}
				return failf("HEALTHCHECK %q exits %d inside %s: %s. Fix: %s", hc.Test, p.ExitCode, name, firstLine(p.Output), hint).with(p.Output)
			}
			return passf("HEALTHCHECK %q exits 0 inside the running container in %dms", hc.Test, p.Took.Milliseconds())
		},
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "(no output)"
	}
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// pollGet asks u every 200 ms until want accepts an answer or the bound
// passes; on failure it returns nil and the last answer (or error) for the
// check's message.
func (e *Env) pollGet(ctx context.Context, u string, bound time.Duration, want func(*response) bool) (*response, string) {
	deadline := time.Now().Add(bound)
	for {
		r, err := e.get(ctx, u, nil)
		if err == nil && want(r) {
			return r, ""
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				return nil, err.Error()
			}
			return nil, fmt.Sprintf("%d %s", r.StatusCode, snippet(r.Body))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
