package daggertest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/kidney-genetics/kidney-genetics-db/ci/daggerbuild"
	"github.com/kidney-genetics/kidney-genetics-db/ci/daggere2e"
	"github.com/kidney-genetics/kidney-genetics-db/ci/daggertest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

func e2eOptions(t *testing.T, e *daggertest.Engine, p spec.Profile) daggere2e.Options {
	c := e.Client(t)
	in := inputs(c)
	im, err := daggerbuild.Build(c, opts(p), in)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := daggerbuild.Base(c, spec.Bases(p)[spec.BasePostgres], in)
	if err != nil {
		t.Fatal(err)
	}
	return daggere2e.Options{Profile: p, Images: im, Postgres: pg, Source: in.Source, RunID: "golden"}
}

func TestE2ETranscript(t *testing.T) {
	for _, p := range []spec.Profile{spec.Upstream, spec.Offline} {
		t.Run(string(p), func(t *testing.T) {
			e := daggertest.Start(t, nil)
			o := e2eOptions(t, e, p)
			res, err := daggere2e.Run(context.Background(), e.Client(t), o)
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != 0 {
				t.Errorf("exit code %d, want the engine's 0", res.ExitCode)
			}
			got := e.Transcript()
			for _, want := range []string{
				// The backend finds PostgreSQL by the production name.
				`withServiceBinding(alias: "kidney_genetics_postgres"`,
				`withServiceBinding(alias: "backend"`,
				`withServiceBinding(alias: "frontend"`,
				`withEnvVariable(name: "BACKEND_UPSTREAM", value: "backend:8000")`,
				`withEnvVariable(name: "POSTGRES_USER", value: "kidney_user")`,
				`withSecretVariable(name: "DATABASE_URL"`,
				`withSecretVariable(name: "POSTGRES_PASSWORD"`,
				`asService(useEntrypoint: true)`,
				// Readiness: the images' own health commands, aimed at the services.
				`curl' '-fsS' '-o' '/dev/null' 'http://backend:8000/api/health'`,
				`wget' '-q' '-O' '/dev/null' 'http://frontend:8080/health'`,
				`withExec(args: ["go","run","./ci/cmd/kgci","check","--backend-url","http://backend:8000","--frontend-url","http://frontend:8080","--results","/results","--runtime","dagger"], expect: ANY)`,
				`withMountedCache(cache: "id:cacheVolume(key:kidney-go-mod)`,
				`filter(include: ["go.mod","go.sum","ci/"])`,
				`withEnvVariable(name: "KGCI_RUN", value: "golden")`,
			} {
				if !strings.Contains(got, want) {
					t.Errorf("no query contains %s", want)
				}
			}
			if strings.Contains(got, daggere2e.DBPassword("golden")) && !strings.Contains(got, "setSecret(") {
				t.Errorf("the database password appears outside setSecret")
			}
			daggertest.Golden(t, "e2e-"+string(p), got)
		})
	}
}

// When checks fail, the error carries summary.md so that `dagger call`
// shows what failed; --allow-failure returns the results instead.
func TestE2EFailedChecks(t *testing.T) {
	failing := func(path []string, f *ast.Field) (any, bool) {
		switch f.Name {
		case "exitCode":
			return 1, true
		case "contents":
			return "| gzip-static | FAIL | no Content-Encoding |", true
		}
		return nil, false
	}
	e := daggertest.Start(t, failing)
	o := e2eOptions(t, e, spec.Upstream)
	_, err := daggere2e.Run(context.Background(), e.Client(t), o)
	if err == nil || !strings.Contains(err.Error(), "gzip-static | FAIL") || !strings.Contains(err.Error(), "--allow-failure") {
		t.Fatalf("error = %v, want the summary and the --allow-failure hint", err)
	}
	o.AllowFailure = true
	res, err := daggere2e.Run(context.Background(), e.Client(t), o)
	if err != nil || res.ExitCode != 1 || res.Results == nil {
		t.Fatalf("with AllowFailure: res=%+v err=%v, want the results and exit code 1", res, err)
	}
}

func TestE2ENeedsRunID(t *testing.T) {
	e := daggertest.Start(t, nil)
	o := e2eOptions(t, e, spec.Upstream)
	o.RunID = ""
	if _, err := daggere2e.Run(context.Background(), e.Client(t), o); err == nil || !strings.Contains(err.Error(), "cache") {
		t.Fatalf("error = %v, want a refusal that names the cache", err)
	}
}
