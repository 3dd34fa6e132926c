package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

func repoFile(t *testing.T, rel string) []byte {
	t.Helper()
	p, err := dockerstack.FindRepoFile(".", rel)
	require.NoError(t, err)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

func parse(t *testing.T, name string, b []byte) *dockerstack.Compose {
	t.Helper()
	c, err := dockerstack.ParseCompose(name, b)
	require.NoError(t, err)
	return c
}

func keys(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Key)
	}
	return out
}

// The repository's compose files are what the architecture asks for.
func TestRepositoryComposeFilesFollowTheArchitecture(t *testing.T) {
	p, err := Architecture()
	require.NoError(t, err)
	assert.Empty(t, p.CheckNPM(parse(t, "docker-compose.prod.yml", repoFile(t, "docker-compose.prod.yml"))))
	assert.Empty(t, p.CheckTest(parse(t, "docker-compose.test.yml", repoFile(t, "docker-compose.test.yml"))))
	assert.Len(t, p.Deviations, 3, "every deviation has its reason")
}

// Each drift from the architecture, made in a copy of the production file,
// is reported with the requirement and the key to fix.
func TestDriftIsNamed(t *testing.T) {
	p, err := Architecture()
	require.NoError(t, err)
	prod := string(repoFile(t, "docker-compose.prod.yml"))
	backend := strings.Index(prod, "\n  backend:")
	frontend := strings.Index(prod, "\n  frontend:")
	require.Positive(t, backend)
	require.Greater(t, frontend, backend)
	// edit replaces old once, inside the given service's block only.
	edit := func(svc, old, new string) string {
		start, end := 0, len(prod)
		switch svc {
		case "postgres":
			end = backend
		case "backend":
			start, end = backend, frontend
		case "frontend":
			start = frontend
		}
		block := prod[start:end]
		require.Contains(t, block, old, "the fixture no longer has %q in %s", old, svc)
		return prod[:start] + strings.Replace(block, old, new, 1) + prod[end:]
	}
	for _, c := range []struct {
		name, yaml, key, requirement string
	}{
		{"capability kept", edit("backend", "cap_drop:\n      - ALL", "cap_drop:\n      - NET_RAW"), "services.backend.cap_drop", "backend: cap_drop ALL"},
		{"capability added back", edit("frontend", "cap_drop:\n      - ALL", "cap_drop:\n      - ALL\n    cap_add:\n      - NET_BIND_SERVICE"), "services.frontend.cap_add", "no capability added back"},
		{"no-new-privileges dropped", edit("postgres", "- no-new-privileges:true", "- apparmor:unconfined"), "services.postgres.security_opt", "no-new-privileges"},
		{"database joins the proxy network", edit("postgres", "networks:\n      - kidney_genetics_internal_net", "networks:\n      - kidney_genetics_internal_net\n      - npm_proxy_network"), "services.postgres.networks", "postgres: networks exactly [kidney_genetics_internal_net]"},
		{"port published in NPM mode", edit("backend", "user: \"1000:1000\"", "user: \"1000:1000\"\n    ports:\n      - \"8000:8000\""), "services.backend.ports", "no published port in NPM mode"},
		{"root user", edit("backend", "user: \"1000:1000\"", "user: \"0:0\""), "services.backend.user", "runs as 1000:1000"},
		{"log rotation dropped", edit("frontend", "logging: *logging", "logging:\n      driver: local"), "services.frontend.logging", "log rotation json-file, max-size 50m, max-file 5"},
		{"health chain weakened", edit("frontend", "condition: service_healthy", "condition: service_started"), "services.frontend.depends_on.backend.condition", "depends_on backend condition service_healthy"},
		{"container renamed", edit("backend", "container_name: kidney_genetics_backend", "container_name: kidney-genetics-backend"), "services.backend.container_name", "underscores"},
		{"no health check", edit("backend", "healthcheck:\n      test:", "healthcheck:\n      disable: true\n      test:"), "services.backend.healthcheck", "a health check"},
		{"internal network opened", strings.Replace(prod, "internal: true", "internal: false", 1), "networks.kidney_genetics_internal_net.internal", "is internal"},
		{"data volume anonymous", edit("postgres", "- kidney_genetics_postgres_data:/var/lib/postgresql/data", "- /var/lib/postgresql/data"), "services.postgres.volumes", "volume kidney_genetics_postgres_data:/var/lib/postgresql/data"},
	} {
		t.Run(c.name, func(t *testing.T) {
			vs := p.CheckNPM(parse(t, "docker-compose.prod.yml", []byte(c.yaml)))
			require.Equal(t, []string{c.key}, keys(vs), "%v", vs)
			assert.Contains(t, vs[0].Requirement, c.requirement)
			assert.Contains(t, vs[0].String(), "docker-compose.prod.yml")
		})
	}
}

func TestTestModePortsAndNetworks(t *testing.T) {
	p, err := Architecture()
	require.NoError(t, err)
	overlay := string(repoFile(t, "docker-compose.test.yml"))
	for _, c := range []struct{ name, yaml, key string }{
		{"published on every interface", strings.Replace(overlay, `"127.0.0.1:8001:8000"`, `"8001:8000"`, 1), "services.backend.ports"},
		{"a port too many", strings.Replace(overlay, `- "127.0.0.1:8080:8080"`, `- "127.0.0.1:8080:8080"`+"\n      - \"127.0.0.1:9090:9090\"", 1), "services.frontend.ports"},
		{"database port missing", strings.Replace(overlay, `- "127.0.0.1:5433:5432"`, ``, 1), "services.postgres.ports"},
		{"backend on the test db network", strings.Replace(overlay, "  backend:\n", "  backend:\n    networks:\n      - kidney_genetics_test_db_net\n", 1), "services.backend.networks"},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.NotEqual(t, overlay, c.yaml, "the fixture edit did not apply")
			vs := p.CheckTest(parse(t, "docker-compose.test.yml", []byte(c.yaml)))
			require.Equal(t, []string{c.key}, keys(vs), "%v", vs)
		})
	}
}

func TestPolicyIsStrict(t *testing.T) {
	_, err := Parse([]byte("services:\n  backend:\n    cap_drop_al: true\n"))
	assert.ErrorContains(t, err, "cap_drop_al", "a typo must not switch a requirement off")
	_, err = Parse([]byte("services:\n  backend: {}\ndeviations:\n  - requirement: x\n    ours: y\n"))
	assert.ErrorContains(t, err, "needs requirement, ours and why")
	b, err := os.ReadFile(filepath.Join("architecture.yaml"))
	require.NoError(t, err)
	_, err = Parse(b)
	require.NoError(t, err)
}
