package daggerrun_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"dagger.io/dagger"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/kidney-genetics/kidney-genetics-db/ci/daggerbuild"
	"github.com/kidney-genetics/kidney-genetics-db/ci/daggerrun"
	"github.com/kidney-genetics/kidney-genetics-db/ci/daggertest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

const revision = "0123456789abcdef0123456789abcdef01234567"

func options(t *testing.T, c *dagger.Client, p spec.Profile) daggerrun.Options {
	t.Helper()
	in := daggerbuild.Inputs{Source: c.LoadDirectoryFromID("source-dir"), Bases: c.LoadDirectoryFromID("bases-dir"), HostCA: c.LoadSecretFromID("host-ca-secret")}
	kgci, err := daggerbuild.Kgci(c, p, in)
	if err != nil {
		t.Fatal(err)
	}
	tool, err := daggerbuild.SupplyChain(c, p, in)
	if err != nil {
		t.Fatal(err)
	}
	im, err := daggerbuild.Build(c, spec.Options{Profile: p, Revision: revision, Created: "2026-11-25T00:00:00Z"}, in, kgci)
	if err != nil {
		t.Fatal(err)
	}
	bases := spec.Bases(p)
	pg, err := daggerbuild.Base(c, bases[spec.BasePostgres], in)
	if err != nil {
		t.Fatal(err)
	}
	docker, err := daggerbuild.Base(c, bases[spec.BaseDocker], in)
	if err != nil {
		t.Fatal(err)
	}
	return daggerrun.Options{
		Profile: p,
		Images:  map[string]*dagger.File{"backend": im.Backend.Tarball, "frontend": im.Frontend.Tarball, "postgres": daggerbuild.Tarball(pg)},
		Kgci:    kgci, SupplyChain: tool, Docker: docker, Source: in.Source, RunID: "golden",
	}
}

// What a run asks the engine for, per profile, is pinned in testdata; the
// assertions below name what must never change.
func TestTestTranscript(t *testing.T) {
	for _, p := range []spec.Profile{spec.Upstream, spec.Offline} {
		t.Run(string(p), func(t *testing.T) {
			e := daggertest.Start(t, nil)
			c := e.Client(t)
			if _, err := daggerrun.Test(context.Background(), c, options(t, c, p)); err != nil {
				t.Fatal(err)
			}
			got := e.Transcript()
			exec := `withExec(args: ["kgci","test-e2e","--dockerd","--profile","` + string(p) + `","--images","/images","--results","/results","--run-id","golden"], expect: ANY, insecureRootCapabilities: true)`
			for _, want := range []string{
				exec,
				// overlay2 cannot nest on the container's overlay root.
				`withMountedTemp(path: "/var/lib/docker")`,
				`withMountedFile(path: "/images/backend.tar"`,
				`withMountedFile(path: "/images/frontend.tar"`,
				`withMountedFile(path: "/images/postgres.tar"`,
				`filter(include: ["docker-compose.prod.yml","docker-compose.test.yml","budgets.yaml","vulnerability-ignore.yaml"])`,
				`asTarball(mediaTypes: DockerMediaTypes)`,
				`"/kgci","finalize","--image","backend"`,
				`"/kgci","finalize","--image","frontend"`,
				`withEnvVariable(name: "KGCI_RUN", value: "golden")`,
			} {
				if !strings.Contains(got, want) {
					t.Errorf("no query contains %s", want)
				}
			}
			// Only the exec that runs Docker gets root's full capabilities.
			if n := strings.Count(got, "insecureRootCapabilities"); n != strings.Count(got, exec) {
				t.Errorf("insecureRootCapabilities appears %d times, only on the test-e2e exec (%d)", n, strings.Count(got, exec))
			}
			daggertest.Golden(t, "e2e-"+string(p), got)
		})
	}
}

func TestTestNeedsRunID(t *testing.T) {
	e := daggertest.Start(t, nil)
	c := e.Client(t)
	o := options(t, c, spec.Upstream)
	o.RunID = ""
	if _, err := daggerrun.Test(context.Background(), c, o); err == nil || !strings.Contains(err.Error(), "cache") {
		t.Fatalf("error = %v, want a refusal that names the cache", err)
	}
}

// failing answers a checker run that exits 1; summary says whether it got
// as far as writing its report.
func failing(summary bool) daggertest.Resolver {
	return func(path []string, f *ast.Field) (any, bool) {
		switch f.Name {
		case "exitCode":
			return 1, true
		case "entries":
			if summary {
				return []string{"junit.xml", "results.json", "summary.md", "logs"}, true
			}
			return []string{}, true
		case "contents":
			return "| ❌ | `gzip.static` | no Content-Encoding |", true
		case "stderr":
			return "kgci test-e2e: image kidney_genetics_backend:latest is not in the Docker engine", true
		}
		return nil, false
	}
}

// Failed checks come back with their results and summary; a run that
// never got to the checks says why, from kgci's own output.
func TestTestFailures(t *testing.T) {
	e := daggertest.Start(t, failing(true))
	c := e.Client(t)
	res, err := daggerrun.Test(context.Background(), c, options(t, c, spec.Upstream))
	if !errors.Is(err, daggerrun.ErrChecksFailed) || !strings.Contains(err.Error(), "gzip.static") || res == nil || res.Results == nil {
		t.Fatalf("res=%v err=%v, want the results and an error with the summary", res, err)
	}
	if _, err := daggerrun.Publish(context.Background(), res, daggerrun.PublishOptions{Registry: "ghcr.io/x", Revision: revision}); err == nil {
		t.Errorf("published after failed checks")
	}

	e = daggertest.Start(t, failing(false))
	c = e.Client(t)
	res, err = daggerrun.Test(context.Background(), c, options(t, c, spec.Upstream))
	if err == nil || errors.Is(err, daggerrun.ErrChecksFailed) || !strings.Contains(err.Error(), "is not in the Docker engine") || res != nil {
		t.Fatalf("res=%v err=%v, want kgci's own error and no results", res, err)
	}
}

// Publish runs kgci publish in the container the checks ran in, so it
// reads the tested digests from that run's results.json; the password
// only travels as a secret.
func TestPublishTranscript(t *testing.T) {
	e := daggertest.Start(t, nil)
	c := e.Client(t)
	tested, err := daggerrun.Test(context.Background(), c, options(t, c, spec.Upstream))
	if err != nil {
		t.Fatal(err)
	}
	before := len(e.Queries())
	_, err = daggerrun.Publish(context.Background(), tested, daggerrun.PublishOptions{
		Registry: "ghcr.io/kidney-genetics", Username: "bot", Password: c.LoadSecretFromID("registry-token"),
		Revision: revision, Version: "v1.2.3", Latest: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for _, q := range e.Queries()[before:] {
		got += daggertest.Pretty(q) + "\n"
	}
	for _, want := range []string{
		`withExec(args: ["kgci","publish","--images","/images","--results","/results","--registry","ghcr.io","--namespace","kidney-genetics","--revision","` + revision + `","--version","v1.2.3","--latest"], expect: ANY)`,
		`withSecretVariable(name: "KGCI_REGISTRY_PASSWORD", secret: "id:loadSecretFromID(id:registry-token)`,
		`withEnvVariable(name: "KGCI_REGISTRY_USERNAME", value: "bot")`,
		// The tested container, not a new build: the test exec is in the chain.
		`"kgci","test-e2e","--dockerd"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("publish queries lack %s\n%s", want, got)
		}
	}
	if n := strings.Count(got, `"kgci","publish"`); n == 0 || strings.Contains(got[strings.Index(got, `"kgci","publish"`):], "insecureRootCapabilities") {
		t.Errorf("the publish exec must not run with root capabilities")
	}
}

func TestPublishRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    daggerrun.PublishOptions
		want string
	}{
		{"no registry", daggerrun.PublishOptions{Revision: revision}, "no registry"},
		{"no revision", daggerrun.PublishOptions{Registry: "ghcr.io"}, "not a git commit id"},
		{"bad version", daggerrun.PublishOptions{Registry: "ghcr.io", Revision: revision, Version: "v1/2"}, "not make a valid image tag"},
		{"user without password", daggerrun.PublishOptions{Registry: "ghcr.io", Revision: revision, Username: "bot"}, "both --username and --password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := daggerrun.PublishArgs(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
		})
	}
}
