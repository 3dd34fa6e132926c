package dockerstack

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	p, err := FindRepoFile(".", rel)
	require.NoError(t, err)
	return p
}

func loadProd(t *testing.T) *Compose {
	c, err := LoadCompose(repoFile(t, ProdComposeFile))
	require.NoError(t, err)
	return c
}

// TestProdTopology pins the deployment the seed architecture describes; the e2e stack and
// the security checks read this same file.
func TestProdTopology(t *testing.T) {
	c := loadProd(t)
	assert.ElementsMatch(t, []string{Postgres, Backend, Frontend}, keysOf(c.Services))

	assert.Equal(t, Network{External: true}, c.Networks["npm_proxy_network"])
	assert.Equal(t, Network{Internal: true, Name: "kidney_genetics_internal_net"}, c.Networks["kidney_genetics_internal_net"])

	want := map[string]struct {
		name      string
		networks  []string
		dependsOn map[string]string
	}{
		Postgres: {"kidney_genetics_postgres", []string{"kidney_genetics_internal_net"}, nil},
		Backend:  {"kidney_genetics_backend", []string{"npm_proxy_network", "kidney_genetics_internal_net"}, map[string]string{Postgres: "service_healthy"}},
		Frontend: {"kidney_genetics_frontend", []string{"npm_proxy_network", "kidney_genetics_internal_net"}, map[string]string{Backend: "service_healthy"}},
	}
	for svc, w := range want {
		s := c.Services[svc]
		assert.Equal(t, w.name, s.ContainerName, svc)
		assert.ElementsMatch(t, w.networks, []string(s.Networks), svc)
		if w.dependsOn == nil {
			assert.Empty(t, s.DependsOn, svc)
		} else {
			assert.Equal(t, dependsOn(w.dependsOn), s.DependsOn, svc)
		}
		assert.Empty(t, s.Ports, "%s: NPM mode publishes nothing", svc)
		assert.True(t, s.NoNewPrivileges(), "%s: no-new-privileges", svc)
		require.NotNil(t, s.Logging, svc)
		assert.Equal(t, "json-file", s.Logging.Driver)
		assert.Equal(t, map[string]string{"max-size": "50m", "max-file": "5"}, s.Logging.Options)
		require.NotNil(t, s.Healthcheck, svc)
	}
	assert.True(t, c.Services[Backend].DropsAllCaps())
	assert.True(t, c.Services[Frontend].DropsAllCaps(), "nginx as UID 101 on 8080 needs no capability")
	assert.False(t, c.Services[Postgres].DropsAllCaps(), "the postgres entrypoint chowns and switches user")
	assert.Equal(t, []string{"kidney_genetics_postgres_data:/var/lib/postgresql/data"}, c.Services[Postgres].Volumes)

	// Users and health checks must agree with the images (ci/spec): compose overrides them.
	imgs := spec.Images(spec.Options{Profile: spec.Upstream})
	for _, im := range imgs {
		s := c.Services[im.Name]
		assert.Equal(t, im.Config.User, s.User, "%s: compose user vs image USER", im.Name)
		assert.Equal(t, im.Config.Healthcheck.Test, []string(s.Healthcheck.Test), "%s: compose healthcheck vs image HEALTHCHECK", im.Name)
		assert.Equal(t, "kidney_genetics_"+im.Name+":latest", s.Image)
	}
	assert.Equal(t, "docker.io/library/"+c.Services[Postgres].Image, spec.Bases(spec.Upstream)[spec.BasePostgres].Ref)
}

// The raw file: the frontend must not be handed the database password.
func TestProdSecretsOnlyWhereNeeded(t *testing.T) {
	var raw struct {
		Services map[string]map[string]any
	}
	b, err := os.ReadFile(repoFile(t, ProdComposeFile))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &raw))
	assert.Equal(t, ".env.production", raw.Services[Backend]["env_file"])
	assert.Equal(t, ".env.production", raw.Services[Postgres]["env_file"])
	assert.NotContains(t, raw.Services[Frontend], "env_file")
	env := raw.Services[Frontend]["environment"].(map[string]any)
	assert.ElementsMatch(t, []string{"API_BASE_URL", "WS_URL", "ENVIRONMENT"}, keysOf(env))
}

func TestEnvExampleDocumentsEveryVariable(t *testing.T) {
	b, err := os.ReadFile(repoFile(t, ".env.example"))
	require.NoError(t, err)
	vars := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			vars[k] = v
		}
	}
	for _, k := range []string{"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "DATABASE_URL", "CORS_ORIGINS", "LOG_LEVEL", "API_BASE_URL", "WS_URL", "ENVIRONMENT"} {
		assert.Contains(t, vars, k)
	}
	assert.Equal(t, "change-me", vars["POSTGRES_PASSWORD"], "a placeholder, never a real secret")
	assert.Contains(t, vars["DATABASE_URL"], "@kidney_genetics_postgres:5432/", "DATABASE_URL names the postgres container")
}

// TestShellQuoteRoundTrip: a real sh splits the quoted line back into the same words,
// expanding nothing.
func TestShellQuoteRoundTrip(t *testing.T) {
	words := []string{"plain", "", "it's", "a b", "$HOME", "`id`", "*", "x\ny", "ü", "--flag=v;w", `back\slash`}
	out, err := exec.Command("sh", "-c", "printf '%s\\0' "+ShellQuote(words...)).Output()
	require.NoError(t, err)
	assert.Equal(t, words, strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00"))
	assert.Equal(t, "docker run -e A=1 x/y:z", ShellQuote("docker", "run", "-e", "A=1", "x/y:z"), "plain words stay unquoted")
}

func TestSecurityAndHealthArgs(t *testing.T) {
	c := loadProd(t)
	assert.Equal(t, []string{
		"--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", "--user", "1000:1000",
		"--log-driver", "json-file", "--log-opt", "max-file=5", "--log-opt", "max-size=50m",
	}, c.Services[Backend].SecurityArgs())
	assert.Equal(t, []string{
		"--health-cmd", `pg_isready -h 127.0.0.1 -U "${POSTGRES_USER}" -d "${POSTGRES_DB}"`, "--health-interval", "10s", "--health-timeout", "5s",
		"--health-start-period", "10s", "--health-retries", "5",
	}, c.Services[Postgres].Healthcheck.HealthArgs(), "$$ becomes $ for the container's shell")
	h := &Healthtest{Test: cmdOrShell{"CMD", "curl", "-fsS", "http://x/it's"}}
	assert.Equal(t, []string{"--health-cmd", `curl -fsS 'http://x/it'\''s'`}, h.HealthArgs())
	assert.Equal(t, []string{"--no-healthcheck"}, (&Healthtest{Test: cmdOrShell{"NONE"}}).HealthArgs())

	for _, o := range []string{"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"} {
		assert.True(t, Service{SecurityOpt: []string{o}}.NoNewPrivileges(), o)
	}
	assert.False(t, Service{SecurityOpt: []string{"no-new-privileges:false"}}.NoNewPrivileges())
}

func TestParseComposeForms(t *testing.T) {
	c, err := ParseCompose("x.yml", []byte(`
services:
  a:
    networks: {n2: {aliases: [x]}, n1: null}
    depends_on: [b]
    healthcheck:
      test: curl -f http://localhost/
networks:
  n1:
  n2: {internal: true}
`))
	require.NoError(t, err)
	assert.Equal(t, []string{"n1", "n2"}, []string(c.Services["a"].Networks))
	assert.Equal(t, dependsOn{"b": "service_started"}, c.Services["a"].DependsOn)
	assert.Equal(t, []string{"CMD-SHELL", "curl -f http://localhost/"}, []string(c.Services["a"].Healthcheck.Test))
	assert.Equal(t, Network{}, c.Networks["n1"])
	assert.True(t, c.Networks["n2"].Internal)
	_, err = ParseCompose("x.yml", []byte("services: {}\n"))
	assert.ErrorContains(t, err, "no services")
	_, err = ParseCompose("x.yml", []byte("services:\n  a:\n    networks: 3\n"))
	assert.Error(t, err)
}

// TestComposeConfig has Docker Compose itself validate and merge the three files, as a user
// would run them (Debian's docker-compose 1.29; scripts/deps/e2e.apt installs it).
func TestComposeConfig(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	require.NoError(t, err, "docker-compose not found: apt-get install -y --no-install-recommends docker-compose (listed in scripts/deps/e2e.apt)")
	dir := t.TempDir()
	for _, f := range []string{"docker-compose.prod.yml", "docker-compose.test.yml", "docker-compose.dev.yml"} {
		b, err := os.ReadFile(repoFile(t, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	ex, err := os.ReadFile(repoFile(t, ".env.example"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".env.production"), ex, 0o600))

	config := func(args ...string) *Compose {
		t.Helper()
		cmd := exec.CommandContext(context.Background(), bin, append(args, "config")...)
		cmd.Dir = dir
		out, err := cmd.Output()
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		require.NoError(t, err, "docker-compose %v config: %s", args, stderr)
		c, err := ParseCompose("merged", out)
		require.NoError(t, err, string(out))
		return c
	}

	prod := config("--env-file", ".env.production", "-f", "docker-compose.prod.yml")
	assert.Equal(t, []string{"ALL"}, prod.Services[Backend].CapDrop)
	assert.True(t, prod.Networks["kidney_genetics_internal_net"].Internal)

	test := config("--env-file", ".env.production", "-f", "docker-compose.prod.yml", "-f", "docker-compose.test.yml")
	assert.Equal(t, []string{"127.0.0.1:8080:8080/tcp"}, []string(test.Services[Frontend].Ports))
	assert.Equal(t, []string{"127.0.0.1:8001:8000/tcp"}, []string(test.Services[Backend].Ports))
	assert.Equal(t, []string{"127.0.0.1:5433:5432/tcp"}, []string(test.Services[Postgres].Ports))
	assert.ElementsMatch(t, []string{"kidney_genetics_internal_net", "kidney_genetics_test_db_net"}, []string(test.Services[Postgres].Networks),
		"a published port needs a network with a gateway; the internal one has none")
	assert.False(t, test.Networks["npm_proxy_network"].External, "no NPM in test mode: compose creates the network")
	assert.True(t, test.Networks["kidney_genetics_internal_net"].Internal)
	assert.True(t, test.Services[Backend].DropsAllCaps(), "the overlay keeps production's hardening")

	dev := config("-f", "docker-compose.dev.yml")
	assert.ElementsMatch(t, []string{Postgres, Backend, Frontend}, keysOf(dev.Services))
	var raw struct {
		Services map[string]struct {
			Command []string
			Ports   []struct{ Published, Target int }
			Volumes []string
		}
	}
	cmd := exec.Command(bin, "-f", "docker-compose.dev.yml", "config")
	cmd.Dir = dir
	out, err := cmd.Output()
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(out, &raw))
	assert.Contains(t, raw.Services[Backend].Command, "--reload")
	assert.Equal(t, []string{filepath.Join(dir, "backend/app") + ":/app/app:rw"}, raw.Services[Backend].Volumes)
	assert.Contains(t, strings.Join(raw.Services[Frontend].Command, " "), "npm run dev -- --host 0.0.0.0 --port 5173")
	ports := map[string]int{}
	for svc, s := range raw.Services {
		for _, p := range s.Ports {
			ports[svc] = p.Published
			assert.Equal(t, p.Published, p.Target)
		}
	}
	assert.Equal(t, map[string]int{Postgres: 5432, Backend: 8000, Frontend: 5173}, ports)
}

func keysOf[V any](m map[string]V) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	return k
}

// A stack that New refuses is never started: a check waiting for one of its services must
// not wait until Ctrl-C.
func TestNewRefusedSettlesEveryService(t *testing.T) {
	s, err := New(Options{Compose: loadProd(t), Docker: &Docker{Bin: "false"}, Images: map[string]string{Postgres: "pg", Backend: "be"}})
	require.ErrorContains(t, err, "no image given for service frontend")
	require.NotNil(t, s)
	for _, svc := range Order {
		select {
		case <-s.Settled(svc):
		default:
			t.Errorf("%s is not settled after New refused the stack", svc)
		}
		select {
		case <-s.Launched(svc):
		default:
			t.Errorf("%s is not launched (or given up) after New refused the stack", svc)
		}
	}
}
