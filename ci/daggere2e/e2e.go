// Package daggere2e runs the end-to-end checks on Dagger: PostgreSQL, the
// backend and the frontend as Dagger services, wired with the host names
// the production stack uses, and `kgci check` in a Go container against
// them. It is the Dagger twin of ci/dockerstack + `kgci test-e2e`; the
// checks themselves are the same code (ci/cmd/kgci check).
package daggere2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"dagger.io/dagger"
	"golang.org/x/sync/errgroup"

	"github.com/kidney-genetics/kidney-genetics-db/ci/daggerbuild"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// Host names inside the Dagger session. The backend reaches PostgreSQL by
// the production container name; the checker and nginx use short names.
const (
	PostgresHost = "kidney_genetics_postgres"
	BackendHost  = "backend"
	FrontendHost = "frontend"

	DBUser = "kidney_user"
	DBName = "kidney_genetics"

	// ResultsDir is where `kgci check` writes junit.xml, summary.md and
	// results.json inside the checker.
	ResultsDir = "/results"

	// DefaultGoImage runs the checker on the upstream profile; the go
	// directive of go.mod decides the minor version.
	DefaultGoImage = "docker.io/library/golang:1.26-bookworm"
)

// Options are the inputs of one run.
type Options struct {
	Profile spec.Profile
	Images  daggerbuild.Images
	// Postgres is the database base image (spec.BasePostgres of the
	// profile); it must honour POSTGRES_USER/PASSWORD/DB like the
	// official image.
	Postgres *dagger.Container
	// Source is the repository root; the checker needs go.mod, go.sum
	// and ci/.
	Source *dagger.Directory
	// Checker is a container with a Go toolchain; nil means DefaultGoImage.
	Checker *dagger.Container
	// RunID makes this run's containers differ from every earlier run's,
	// so the engine's cache never answers with old results. It also
	// seeds the throwaway database password.
	RunID string
	// AllowFailure returns the results directory even when checks fail.
	AllowFailure bool
}

// Result is what a run produced.
type Result struct {
	Results  *dagger.Directory
	ExitCode int
}

// DBPassword is the throwaway database's password for a run. The database
// is reachable only by the containers bound to it in this session.
func DBPassword(runID string) string {
	sum := sha256.Sum256([]byte("kgci-e2e-db:" + runID))
	return hex.EncodeToString(sum[:12])
}

// DatabaseURL is what the backend gets.
func DatabaseURL(runID string) string {
	return fmt.Sprintf("postgresql://%s:%s@%s:5432/%s", DBUser, DBPassword(runID), PostgresHost, DBName)
}

// Services are the three services of a run, wired together.
type Services struct {
	Postgres, Backend, Frontend *dagger.Service
}

// Stack wires the services: nothing starts until something binds them.
func Stack(c *dagger.Client, o Options) Services {
	pw := c.SetSecret("kgci-e2e-db-password-"+o.RunID, DBPassword(o.RunID))
	dbURL := c.SetSecret("kgci-e2e-database-url-"+o.RunID, DatabaseURL(o.RunID))
	pg := o.Postgres.
		WithEnvVariable("POSTGRES_USER", DBUser).
		WithEnvVariable("POSTGRES_DB", DBName).
		WithSecretVariable("POSTGRES_PASSWORD", pw).
		WithEnvVariable("KGCI_RUN", o.RunID).
		// An offline base may not declare the port; Dagger waits for
		// exposed ports before it starts a client of the service.
		WithExposedPort(5432).
		AsService(dagger.ContainerAsServiceOpts{UseEntrypoint: true})
	backend := o.Images.Backend.
		WithServiceBinding(PostgresHost, pg).
		WithSecretVariable("DATABASE_URL", dbURL).
		WithEnvVariable("LOG_LEVEL", "info").
		WithEnvVariable("KGCI_RUN", o.RunID).
		AsService(dagger.ContainerAsServiceOpts{UseEntrypoint: true})
	frontend := o.Images.Frontend.
		WithServiceBinding(BackendHost, backend).
		WithEnvVariable("BACKEND_UPSTREAM", BackendHost+":"+strconv.Itoa(spec.BackendPort)).
		WithEnvVariable("KGCI_RUN", o.RunID).
		AsService(dagger.ContainerAsServiceOpts{UseEntrypoint: true})
	return Services{Postgres: pg, Backend: backend, Frontend: frontend}
}

// Probe waits for one service's health endpoint with the image's own
// health command (its HEALTHCHECK, which Dagger does not run), pointed at
// the service's host name instead of 127.0.0.1. It runs in a container
// of the same image, so it needs no tool the image lacks.
func Probe(image *dagger.Container, hc spec.Healthcheck, svc *dagger.Service, host string, port int, runID string) (*dagger.Container, error) {
	if len(hc.Test) < 2 || hc.Test[0] != "CMD" {
		return nil, fmt.Errorf("health check %q: want [\"CMD\", ...]", hc.Test)
	}
	local := "127.0.0.1:" + strconv.Itoa(port)
	remote := host + ":" + strconv.Itoa(port)
	args := make([]string, 0, len(hc.Test)-1)
	for _, a := range hc.Test[1:] {
		args = append(args, shellQuote(strings.ReplaceAll(a, local, remote)))
	}
	// As long as Docker would wait before calling the service unhealthy.
	tries := hc.StartPeriod + hc.Retries*hc.Interval
	script := fmt.Sprintf(`i=0; until %s; do i=$((i+1)); if [ "$i" -ge %d ]; then echo "%s did not answer its health check in %d s" >&2; exit 1; fi; sleep 1; done`,
		strings.Join(args, " "), tries, host, tries)
	return image.
		WithServiceBinding(host, svc).
		WithEnvVariable("KGCI_RUN", runID).
		WithExec([]string{"sh", "-c", script}), nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// CheckArgs is the checker's command: the flags of ci/cmd/kgci/check.go.
func CheckArgs() []string {
	return []string{
		"go", "run", "./ci/cmd/kgci", "check",
		"--backend-url", "http://" + BackendHost + ":" + strconv.Itoa(spec.BackendPort),
		"--frontend-url", "http://" + FrontendHost + ":" + strconv.Itoa(spec.FrontendPort),
		"--results", ResultsDir,
		"--runtime", "dagger",
	}
}

// Checker is the container that runs `kgci check` against the services.
func Checker(c *dagger.Client, o Options, s Services) *dagger.Container {
	base := o.Checker
	if base == nil {
		base = c.Container().From(DefaultGoImage)
	}
	src := o.Source.Filter(dagger.DirectoryFilterOpts{Include: []string{"go.mod", "go.sum", "ci/"}})
	return base.
		WithMountedCache("/go/pkg/mod", c.CacheVolume("kidney-go-mod")).
		WithMountedCache("/root/.cache/go-build", c.CacheVolume("kidney-go-build")).
		WithDirectory("/src", src).
		WithWorkdir("/src").
		WithServiceBinding(BackendHost, s.Backend).
		WithServiceBinding(FrontendHost, s.Frontend).
		WithEnvVariable("KGCI_RUN", o.RunID).
		WithExec(CheckArgs(), dagger.ContainerWithExecOpts{Expect: dagger.ReturnTypeAny})
}

// Run starts the stack, waits for both health endpoints, runs the checks
// and returns their results directory.
//
// The services are started explicitly: a service that is only bound is
// stopped when the last container using it finishes, so the health probes
// and the checker would each get a freshly started stack and the probes
// would prove nothing about the one the checks run against.
func Run(ctx context.Context, c *dagger.Client, o Options) (res *Result, rerr error) {
	if o.RunID == "" {
		return nil, fmt.Errorf("daggere2e: empty RunID would let the engine answer from the cache of an earlier run")
	}
	opts := spec.Options{Profile: o.Profile}
	back, front := spec.Backend(opts).Config.Healthcheck, spec.Frontend(opts).Config.Healthcheck
	s := Stack(c, o)
	probeBackend, err := Probe(o.Images.Backend, *back, s.Backend, BackendHost, spec.BackendPort, o.RunID)
	if err != nil {
		return nil, err
	}
	probeFrontend, err := Probe(o.Images.Frontend, *front, s.Frontend, FrontendHost, spec.FrontendPort, o.RunID)
	if err != nil {
		return nil, err
	}

	// In dependency order, so that a failure names the first service
	// that did not come up.
	for _, st := range []struct {
		name string
		svc  *dagger.Service
	}{{"postgres", s.Postgres}, {"backend", s.Backend}, {"frontend", s.Frontend}} {
		if _, err := st.svc.Start(ctx); err != nil {
			return nil, fmt.Errorf("start %s: %w", st.name, err)
		}
		defer func() {
			// Stopping must happen even when ctx was cancelled.
			if _, err := st.svc.Stop(context.WithoutCancel(ctx)); err != nil && rerr == nil {
				rerr = fmt.Errorf("stop %s: %w", st.name, err)
			}
		}()
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		_, err := probeBackend.Sync(gctx)
		return wrap("backend health check", err)
	})
	g.Go(func() error {
		_, err := probeFrontend.Sync(gctx)
		return wrap("frontend health check", err)
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}

	checker := Checker(c, o, s)
	code, err := checker.ExitCode(ctx)
	if err != nil {
		return nil, fmt.Errorf("run kgci check: %w", err)
	}
	res = &Result{Results: checker.Directory(ResultsDir), ExitCode: code}
	if code != 0 && !o.AllowFailure {
		summary, serr := res.Results.File("summary.md").Contents(ctx)
		if serr != nil {
			summary = "(no summary.md: " + serr.Error() + ")"
		}
		return res, fmt.Errorf("kgci check failed (exit %d); pass --allow-failure to export the results anyway.\n%s", code, summary)
	}
	return res, nil
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
