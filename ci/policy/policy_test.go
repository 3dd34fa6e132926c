package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
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
	assert.Len(t, p.Deviations, 5, "every deviation has its reason")
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
	const served = "frontend_http: {env_config_cache_control: [no-store], gzip_types: [text/css]}\n"
	_, err = Parse([]byte("services:\n  backend: {}\n" + served + "deviations:\n  - requirement: x\n    ours: y\n"))
	assert.ErrorContains(t, err, "needs requirement, ours and why")
	_, err = Parse([]byte("services:\n  backend: {}\nfrontend_http: {gzip_types: [text/css]}\n"))
	assert.ErrorContains(t, err, "frontend_http needs env_config_cache_control", "an empty expectation would let env_injection pass vacuously")
	_, err = Parse([]byte("services:\n  backend: {}\n" + served + "frontend_http_extra: 1\n"))
	assert.ErrorContains(t, err, "frontend_http_extra")
	_, err = Parse([]byte("services:\n  backend: {}\nfrontend_http: {env_config_cache_control: [no-store], gzip_type: [text/css]}\n"))
	assert.ErrorContains(t, err, "gzip_type")
	b, err := os.ReadFile(filepath.Join("architecture.yaml"))
	require.NoError(t, err)
	_, err = Parse(b)
	require.NoError(t, err)
}

func TestParsePort(t *testing.T) {
	for s, want := range map[string]Port{
		"127.0.0.1:8001:8000": {HostIP: "127.0.0.1", HostPort: "8001", Container: "8000", Proto: "tcp"},
		"8001:8000":           {HostPort: "8001", Container: "8000", Proto: "tcp"},
		"8000":                {Container: "8000", Proto: "tcp"},
		"127.0.0.1::8000/udp": {HostIP: "127.0.0.1", Container: "8000", Proto: "udp"},
		"[::1]:8001:8000":     {HostIP: "::1", HostPort: "8001", Container: "8000", Proto: "tcp"},
	} {
		assert.Equal(t, want, ParsePort(s), s)
	}
	assert.Equal(t, "[::]:49153:8000", Port{HostIP: "::", HostPort: "49153", Container: "8000", Proto: "tcp"}.String())
	for _, s := range []string{"8000", "8001:8000", "127.0.0.1::8000", "127.0.0.1:8001:8000/udp"} {
		assert.Equal(t, s, ParsePort(s).String(), "round trip")
	}
	assert.True(t, samePorts([]Port{ParsePort("127.0.0.1:49153:8000")}, []Port{ParsePort("127.0.0.1:8001:8000")}, true))
	assert.False(t, samePorts([]Port{ParsePort("127.0.0.1:49153:8000")}, []Port{ParsePort("127.0.0.1:8001:8000")}, false))
	assert.False(t, samePorts([]Port{ParsePort("0.0.0.0:49153:8000")}, []Port{ParsePort("127.0.0.1:8001:8000")}, true))
}

// runningStack is what `docker inspect` shows of kgci test-e2e's stack made from the
// repository's compose file (ci/dockerstack: kgci-<run>- names, container_name as alias,
// loopback ports with host ports Docker picks), in the policy's terms.
func runningStack(t *testing.T) Runtime {
	t.Helper()
	logs := LogConfig{Driver: "json-file", Options: map[string]string{"max-size": "50m", "max-file": "5"}}
	nnp := []string{"no-new-privileges:true"}
	return Runtime{
		Compose: parse(t, "docker-compose.prod.yml", repoFile(t, "docker-compose.prod.yml")),
		Services: map[string]Running{
			"postgres": {
				Name: "kgci-ab12-postgres", Aliases: []string{"kidney_genetics_postgres", "3f2a9c1d"},
				User: "postgres", SecurityOpt: nnp, Networks: []string{"kidney_genetics_internal_net"},
				Healthcheck: []string{"CMD-SHELL", "pg_isready -h 127.0.0.1"}, LogConfig: logs,
				Mounts: []string{"kidney_genetics_postgres_data:/var/lib/postgresql/data"},
			},
			"backend": {
				Name: "kgci-ab12-backend", Aliases: []string{"kidney_genetics_backend"},
				User: "1000:1000", CapDrop: []string{"ALL"}, SecurityOpt: nnp,
				Networks:    []string{"kidney_genetics_internal_net", "npm_proxy_network"},
				Ports:       []Port{{HostIP: "127.0.0.1", HostPort: "49153", Container: "8000", Proto: "tcp"}},
				Healthcheck: []string{"CMD", "curl", "-fsS", "http://127.0.0.1:8000/api/health"}, LogConfig: logs,
			},
			"frontend": {
				Name: "kgci-ab12-frontend", Aliases: []string{"kidney_genetics_frontend"},
				User: "101:101", CapDrop: []string{"ALL"}, SecurityOpt: nnp,
				Networks:    []string{"npm_proxy_network", "kidney_genetics_internal_net"},
				Ports:       []Port{{HostIP: "127.0.0.1", HostPort: "49154", Container: "8080", Proto: "tcp"}},
				Healthcheck: []string{"CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/health"}, LogConfig: logs,
			},
		},
		Networks: map[string]RunningNetwork{
			"kidney_genetics_internal_net": {Name: "kgci-ab12-kidney_genetics_internal_net", Internal: true},
			"npm_proxy_network":            {Name: "kgci-ab12-npm_proxy_network"},
		},
	}
}

// Each way a running container can differ from the architecture is named, with the
// inspect field that shows it and the key to fix; where the compose file is right, the
// message says the container was created otherwise.
func TestRuntimeDrift(t *testing.T) {
	p, err := Architecture()
	require.NoError(t, err)
	require.Empty(t, p.CheckRuntime(runningStack(t)), "the stack as kgci test-e2e runs it follows the policy")
	svc := func(rt *Runtime, name string, edit func(*Running)) {
		r := rt.Services[name]
		edit(&r)
		rt.Services[name] = r
	}
	for _, c := range []struct {
		name        string
		edit        func(*Runtime)
		key, seen   string
		requirement string
		fixIn       string // the file the message names
	}{
		{"capability added back", func(rt *Runtime) { svc(rt, "backend", func(r *Running) { r.CapAdd = []string{"CAP_NET_RAW"} }) },
			"services.backend.cap_add", "container kgci-ab12-backend HostConfig.CapAdd", "backend: no capability added back after cap_drop ALL", "docker-compose.prod.yml"},
		{"capabilities kept", func(rt *Runtime) { svc(rt, "frontend", func(r *Running) { r.CapDrop = nil }) },
			"services.frontend.cap_drop", "HostConfig.CapDrop", "frontend: cap_drop ALL", "docker-compose.prod.yml"},
		{"root", func(rt *Runtime) { svc(rt, "backend", func(r *Running) { r.User = "0" }) },
			"services.backend.user", "Config.User", "runs as 1000:1000", "docker-compose.prod.yml"},
		{"no-new-privileges missing", func(rt *Runtime) { svc(rt, "postgres", func(r *Running) { r.SecurityOpt = nil }) },
			"services.postgres.security_opt", "HostConfig.SecurityOpt", "no-new-privileges", "docker-compose.prod.yml"},
		{"database on the proxy network", func(rt *Runtime) {
			svc(rt, "postgres", func(r *Running) { r.Networks = append(r.Networks, "npm_proxy_network") })
		}, "services.postgres.networks", "NetworkSettings.Networks", "postgres: networks [kidney_genetics_internal_net], in test mode also [kidney_genetics_test_db_net]", "docker-compose.prod.yml"},
		{"a network of another run", func(rt *Runtime) {
			svc(rt, "frontend", func(r *Running) { r.Networks = append(r.Networks, "kgci-ff00-npm_proxy_network") })
		}, "services.frontend.networks", "NetworkSettings.Networks", "frontend: networks exactly", "docker-compose.prod.yml"},
		{"not on the internal network", func(rt *Runtime) {
			svc(rt, "backend", func(r *Running) { r.Networks = []string{"npm_proxy_network"} })
		}, "services.backend.networks", "NetworkSettings.Networks", "backend: networks exactly", "docker-compose.prod.yml"},
		{"alias missing", func(rt *Runtime) { svc(rt, "backend", func(r *Running) { r.Aliases = []string{"backend"} }) },
			"services.backend.container_name", "network aliases", "container_name kidney_genetics_backend", "docker-compose.prod.yml"},
		{"health check off", func(rt *Runtime) { svc(rt, "frontend", func(r *Running) { r.Healthcheck = []string{"NONE"} }) },
			"services.frontend.healthcheck", "Config.Healthcheck", "frontend: a health check", "docker-compose.prod.yml"},
		{"log size changed", func(rt *Runtime) {
			svc(rt, "backend", func(r *Running) {
				r.LogConfig = LogConfig{Driver: "json-file", Options: map[string]string{"max-size": "10m", "max-file": "5"}}
			})
		}, "services.backend.logging", "HostConfig.LogConfig", "log rotation json-file, max-size 50m, max-file 5", "docker-compose.prod.yml"},
		{"daemon's default logging", func(rt *Runtime) { svc(rt, "postgres", func(r *Running) { r.LogConfig = LogConfig{Driver: "local"} }) },
			"services.postgres.logging", "HostConfig.LogConfig", "(Log Rotation)", "docker-compose.prod.yml"},
		{"anonymous data volume", func(rt *Runtime) {
			svc(rt, "postgres", func(r *Running) { r.Mounts = []string{"3c5e0d7a:/var/lib/postgresql/data"} })
		}, "services.postgres.volumes", "Mounts", "volume kidney_genetics_postgres_data:/var/lib/postgresql/data", "docker-compose.prod.yml"},
		{"data volume read-only", func(rt *Runtime) {
			svc(rt, "postgres", func(r *Running) { r.Mounts = []string{"kidney_genetics_postgres_data:/var/lib/postgresql/data:ro"} })
		}, "services.postgres.volumes", "Mounts", "(Volume Management)", "docker-compose.prod.yml"},
		{"published on every interface", func(rt *Runtime) {
			svc(rt, "backend", func(r *Running) {
				r.Ports = []Port{{HostIP: "0.0.0.0", HostPort: "49153", Container: "8000", Proto: "tcp"}}
			})
		}, "containerPorts", "NetworkSettings.Ports", "backend: publishes exactly [127.0.0.1:8001:8000], any host port", PortsFile},
		{"database published", func(rt *Runtime) {
			svc(rt, "postgres", func(r *Running) {
				r.Ports = []Port{{HostIP: "127.0.0.1", HostPort: "5433", Container: "5432", Proto: "tcp"}}
			})
		}, "containerPorts", "NetworkSettings.Ports", "postgres: publishes exactly []", PortsFile},
		{"frontend unpublished", func(rt *Runtime) { svc(rt, "frontend", func(r *Running) { r.Ports = nil }) },
			"containerPorts", "NetworkSettings.Ports", "frontend: publishes exactly [127.0.0.1:8080:8080]", PortsFile},
		{"internal network opened", func(rt *Runtime) {
			rt.Networks["kidney_genetics_internal_net"] = RunningNetwork{Name: "kgci-ab12-kidney_genetics_internal_net"}
		}, "networks.kidney_genetics_internal_net.internal", "network kgci-ab12-kidney_genetics_internal_net Internal", "is internal", "docker-compose.prod.yml"},
		{"no container", func(rt *Runtime) { delete(rt.Services, "backend") },
			"services.backend", "the run", "backend: a running container", "docker-compose.prod.yml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rt := runningStack(t)
			c.edit(&rt)
			vs := p.CheckRuntime(rt)
			require.Equal(t, []string{c.key}, keys(vs), "%v", vs)
			v := vs[0]
			assert.Contains(t, v.Requirement, c.requirement)
			assert.Contains(t, v.Seen, c.seen)
			assert.Equal(t, c.fixIn, v.File)
			assert.Contains(t, v.String(), c.fixIn)
		})
	}
}

// The message says where the fix is: in the compose file when the file asks for what
// the container shows, in how the container was created when the file is right.
func TestRuntimeViolationSaysWhereToFix(t *testing.T) {
	p, err := Architecture()
	require.NoError(t, err)
	rt := runningStack(t)
	be := rt.Services["backend"]
	be.CapAdd = []string{"NET_RAW"}
	rt.Services["backend"] = be
	vs := p.CheckRuntime(rt)
	require.Len(t, vs, 1)
	assert.True(t, vs[0].FileIsRight)
	assert.Equal(t, "backend: no capability added back after cap_drop ALL: container kgci-ab12-backend HostConfig.CapAdd has [NET_RAW], although services.backend.cap_add in docker-compose.prod.yml is right: the container was created otherwise (ci/dockerstack Stack.CreateArgs, or an override of the run)", vs[0].String())

	prod := string(repoFile(t, "docker-compose.prod.yml"))
	i := strings.Index(prod, "\n  backend:")
	require.Positive(t, i)
	drifted := prod[:i] + strings.Replace(prod[i:], "cap_drop:\n      - ALL", "cap_drop:\n      - ALL\n    cap_add:\n      - NET_RAW", 1)
	require.NotEqual(t, prod, drifted)
	rt.Compose = parse(t, "docker-compose.prod.yml", []byte(drifted))
	vs = p.CheckRuntime(rt)
	require.Len(t, vs, 1)
	assert.False(t, vs[0].FileIsRight)
	assert.Equal(t, "backend: no capability added back after cap_drop ALL: container kgci-ab12-backend HostConfig.CapAdd has [NET_RAW] (set services.backend.cap_add in docker-compose.prod.yml)", vs[0].String())
}

// What `docker inspect` (Docker 20.10) prints of a kgci test-e2e container becomes the
// policy's Running: the run's names mapped back, aliases common to all its networks.
func TestFromInspect(t *testing.T) {
	var infos []dockerstack.ContainerInfo
	require.NoError(t, json.Unmarshal([]byte(`[{
		"Name": "/kgci-ab12-postgres",
		"Config": {"User": "", "Healthcheck": {"Test": ["CMD-SHELL", "pg_isready -h 127.0.0.1"], "Interval": 1000000000}},
		"HostConfig": {"CapAdd": null, "CapDrop": null, "SecurityOpt": ["no-new-privileges:true"],
			"LogConfig": {"Type": "json-file", "Config": {"max-file": "5", "max-size": "50m"}}},
		"NetworkSettings": {
			"Ports": {"5432/tcp": null, "9999/udp": [{"HostIp": "127.0.0.1", "HostPort": "40000"}]},
			"Networks": {
				"kgci-ab12-kidney_genetics_internal_net": {"Aliases": ["kidney_genetics_postgres", "3f2a9c1d"], "IPAddress": "172.20.0.2"},
				"bridge": {"Aliases": null}
			}
		},
		"Mounts": [
			{"Type": "volume", "Name": "kgci-ab12-kidney_genetics_postgres_data", "Destination": "/var/lib/postgresql/data", "RW": true},
			{"Type": "volume", "Name": "0a1b2c", "Destination": "/scratch", "RW": false},
			{"Type": "bind", "Source": "/tmp/x", "Destination": "/etc/x", "RW": false}
		]
	}]`), &infos))
	nets := map[string]string{"kidney_genetics_internal_net": "kgci-ab12-kidney_genetics_internal_net", "npm_proxy_network": "kgci-ab12-npm_proxy_network"}
	vols := map[string]string{"kidney_genetics_postgres_data": "kgci-ab12-kidney_genetics_postgres_data"}
	assert.Equal(t, Running{
		Name:        "kgci-ab12-postgres",
		SecurityOpt: []string{"no-new-privileges:true"},
		Networks:    []string{"bridge", "kidney_genetics_internal_net"},
		Ports:       []Port{{HostIP: "127.0.0.1", HostPort: "40000", Container: "9999", Proto: "udp"}},
		Healthcheck: []string{"CMD-SHELL", "pg_isready -h 127.0.0.1"},
		LogConfig:   LogConfig{Driver: "json-file", Options: map[string]string{"max-file": "5", "max-size": "50m"}},
		Mounts:      []string{"kidney_genetics_postgres_data:/var/lib/postgresql/data", "0a1b2c:/scratch:ro"},
	}, FromInspect(&infos[0], nets, vols), "a network without the alias leaves none common to all")

	delete(infos[0].NetworkSettings.Networks, "bridge")
	r := FromInspect(&infos[0], nets, vols)
	assert.Equal(t, []string{"kidney_genetics_postgres", "3f2a9c1d"}, r.Aliases)
	assert.Equal(t, []string{"kidney_genetics_internal_net"}, r.Networks)
}

func TestFrontendHTTPExpectations(t *testing.T) {
	p, err := Architecture()
	require.NoError(t, err)
	assert.Empty(t, p.CacheControlMissing("no-store, no-cache, must-revalidate"))
	assert.Empty(t, p.CacheControlMissing("No-Cache,no-store"))
	assert.Equal(t, []string{"no-store"}, p.CacheControlMissing("no-cache, max-age=0"))
	assert.Equal(t, []string{"no-store", "no-cache"}, p.CacheControlMissing(""))
	assert.Equal(t, []string{"no-store", "no-cache"}, p.CacheControlMissing("public, max-age=31536000, immutable"))
	assert.True(t, p.Gzipped("application/javascript"))
	assert.True(t, p.Gzipped("application/json; charset=utf-8"))
	assert.True(t, p.Gzipped("Text/CSS"))
	assert.False(t, p.Gzipped("image/png"))
	assert.False(t, p.Gzipped("text/html"), "nginx always gzips text/html; the document does not list it")
}

// nginx/nginx.prod.conf serves what frontend_http asks: its gzip_types are the policy's,
// and its env-config.js location sends every required Cache-Control directive. (The run
// time checks env_injection and gzip.assets see the headers; this names the file.)
func TestNginxConfServesThePolicy(t *testing.T) {
	p, err := Architecture()
	require.NoError(t, err)
	conf := string(repoFile(t, "nginx/nginx.prod.conf"))
	m := regexp.MustCompile(`(?m)^\s*gzip_types\s+([^;]+);`).FindStringSubmatch(conf)
	require.NotNil(t, m, "nginx.prod.conf has no gzip_types")
	assert.ElementsMatch(t, p.FrontendHTTP.GzipTypes, strings.Fields(m[1]), "gzip_types in nginx/nginx.prod.conf and frontend_http.gzip_types in architecture.yaml")
	loc := regexp.MustCompile(`(?s)location = /env-config\.js \{(.*?)\n\s*\}`).FindStringSubmatch(conf)
	require.NotNil(t, loc, "nginx.prod.conf has no `location = /env-config.js`")
	cc := regexp.MustCompile(`add_header Cache-Control "([^"]*)"`).FindStringSubmatch(loc[1])
	require.NotNil(t, cc, "`location = /env-config.js` sets no Cache-Control")
	assert.Empty(t, p.CacheControlMissing(cc[1]), "Cache-Control of env-config.js in nginx/nginx.prod.conf")
}
