package spec

import (
	"fmt"
	"regexp"
	"time"
)

// Options are the inputs that vary between builds of the same source.
type Options struct {
	Profile  Profile
	Revision string // git revision, recorded as a label
	Created  string // RFC 3339 build time, recorded as a label
}

var hexRevision = regexp.MustCompile(`^[0-9a-f]{7,64}$`)

// Validate rejects label values that would be written into the images
// unchecked; both engines call it before building. Empty values are the
// caller's to fill in (from git) or to leave empty on purpose.
func (o Options) Validate() error {
	if _, err := ParseProfile(string(o.Profile)); err != nil {
		return err
	}
	if o.Revision != "" && !hexRevision.MatchString(o.Revision) {
		return fmt.Errorf("revision %q is not a git commit id (7-64 lower-case hex digits): pass the output of `git rev-parse HEAD`", o.Revision)
	}
	if o.Created != "" {
		if _, err := time.Parse(time.RFC3339, o.Created); err != nil {
			return fmt.Errorf("created %q is not an RFC 3339 time (e.g. 2026-11-25T10:00:00Z): pass the output of `git log -1 --format=%%cI`", o.Created)
		}
	}
	return nil
}

const (
	BackendUID  = 1000 // kidney-api, as in the seed
	FrontendUID = 101  // nginx, as in nginx:alpine
	BackendPort = 8000
	// nginx listens on 8080 rather than 80 so that it can run as UID 101
	// without CAP_NET_BIND_SERVICE (the backend drops all capabilities).
	FrontendPort = 8080
)

const systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Images returns both production images for the options.
func Images(o Options) []Image {
	return []Image{Backend(o), Frontend(o)}
}

// ByName returns the image called name ("backend" or "frontend").
func ByName(o Options, name string) (Image, error) {
	for _, im := range Images(o) {
		if im.Name == name {
			return im, nil
		}
	}
	return Image{}, fmt.Errorf("unknown image %q: want backend or frontend", name)
}

// aptCaches keep downloaded .debs and package lists between builds; apt
// takes file locks in both, so they are not shared between parallel steps.
var aptCaches = []Cache{
	{ID: "kidney-apt-cache", Path: "/var/cache/apt", Locked: true},
	{ID: "kidney-apt-lists", Path: "/var/lib/apt/lists", Locked: true},
}

// Backend is the FastAPI image: a builder stage that creates /opt/venv and a
// slim runtime stage that receives only the venv and the application code.
func Backend(o Options) Image {
	builder := Stage{Name: "builder", Base: BasePython}
	builder.Ops = append(builder.Ops,
		Workdir{Path: "/src"},
		// Dependency metadata first: a change to the application code does
		// not invalidate the (slow) dependency install below.
		CopySrc{From: "backend/pyproject.toml", To: "/src/pyproject.toml"},
		CopySrc{From: "scripts/check-requirements.py", To: "/usr/local/bin/check-requirements.py"},
	)
	if o.Profile == Offline {
		// No PyPI: the venv is filled from Debian's python3-* packages,
		// downloaded from the apt mirror and unpacked into the venv, so
		// the runtime image gets the same /opt/venv shape as with uv.
		builder.Ops = append(builder.Ops,
			CopySrc{From: "scripts/offline-venv.sh", To: "/usr/local/bin/offline-venv.sh"},
			Run{Args: []string{"sh", "/usr/local/bin/offline-venv.sh", "/opt/venv", "/src/pyproject.toml"}, Caches: aptCaches},
		)
	} else {
		builder.Ops = append(builder.Ops,
			CopyImage{Ref: UVImage, From: "/uv", To: "/usr/local/bin/uv"},
			Env{KV{"UV_LINK_MODE", "copy"}},
			Env{KV{"UV_COMPILE_BYTECODE", "1"}},
			Env{KV{"UV_PYTHON_DOWNLOADS", "never"}},
			Run{
				Args:   []string{"sh", "-c", "uv venv /opt/venv && uv pip install --python /opt/venv/bin/python -r /src/pyproject.toml"},
				Caches: []Cache{{ID: "kidney-uv-cache", Path: "/root/.cache/uv"}},
			},
		)
	}
	// The same requirement check in both profiles: the venv must satisfy
	// pyproject.toml whichever installer filled it.
	builder.Ops = append(builder.Ops,
		Run{Args: []string{"/opt/venv/bin/python", "/usr/local/bin/check-requirements.py", "/src/pyproject.toml"}},
	)

	owner := fmt.Sprintf("%d:%d", BackendUID, BackendUID)
	runtime := Stage{Name: "runtime", Base: BasePython, Ops: []Op{
		// curl is the health check's only tool. apt's lists, downloaded
		// .debs and its pkgcache.bin files (80 MB on a base without
		// docker-clean) stay in the cache mounts, out of the layer.
		Run{Args: []string{"sh", "-c", "apt-get update && apt-get install -y --no-install-recommends curl"}, Caches: aptCaches},
		Run{Args: []string{"sh", "-c", fmt.Sprintf("groupadd -r -g %d kidney-api && useradd -r -u %d -g kidney-api -m -s /bin/bash kidney-api", BackendUID, BackendUID)}},
		CopyStage{Stage: "builder", From: "/opt/venv", To: "/opt/venv", Dir: true},
		CopySrc{From: "backend/app", To: "/app/app", Dir: true, Owner: owner, Exclude: []string{"**/__pycache__", "**/*.pyc"}},
	}}
	if o.Profile != Offline {
		// python:3.11-slim ships pip, setuptools and wheel in the system
		// Python; the runtime installs nothing, so no package manager may
		// stay in it (security.no_build_tools). The Debian-made base has
		// none to remove.
		runtime.Ops = append(runtime.Ops[:1], append([]Op{
			Run{Args: []string{"python3", "-m", "pip", "uninstall", "-y", "pip", "setuptools", "wheel"}},
		}, runtime.Ops[1:]...)...)
	}

	return Image{
		Name:   "backend",
		Tag:    "kidney_genetics_backend:latest",
		Stages: []Stage{builder, runtime},
		Config: Config{
			// Numeric so that runtimes that enforce non-root (Kubernetes
			// runAsNonRoot) can verify it without reading /etc/passwd.
			User: owner,
			Env: []KV{
				{"PATH", "/opt/venv/bin:" + systemPath},
				{"VIRTUAL_ENV", "/opt/venv"},
				{"LANG", "C.UTF-8"},
				{"PYTHONUNBUFFERED", "1"},
				{"PYTHONDONTWRITEBYTECODE", "1"},
			},
			Cmd:          []string{"python", "-m", "uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", fmt.Sprint(BackendPort)},
			WorkingDir:   "/app",
			ExposedPorts: []string{fmt.Sprintf("%d/tcp", BackendPort)},
			Healthcheck: &Healthcheck{
				Test:     []string{"CMD", "curl", "-fsS", "-o", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d/api/health", BackendPort)},
				Interval: 30, Timeout: 10, StartPeriod: 40, Retries: 3,
			},
			Labels: withTitle(o, "kidney_genetics_backend"),
		},
	}
}

// FrontendLockfile is where the frontend image keeps the package-lock.json it was built from.
const FrontendLockfile = "/usr/share/doc/kidney-genetics-frontend/package-lock.json"

// Frontend is the Vue app: a node builder that runs `vite build` and an
// nginx runtime that holds only dist/, our config and the entrypoint.
func Frontend(o Options) Image {
	npmCI := Run{
		Args:   []string{"npm", "ci", "--no-audit", "--no-fund"},
		Caches: []Cache{{ID: "kidney-npm-cache", Path: "/root/.npm"}},
	}
	if o.Profile == Offline {
		// Our machines reach npm only through a TLS-re-signing proxy.
		npmCI.HostCA = true
		npmCI.Env = []KV{{"NODE_EXTRA_CA_CERTS", HostCAPath}}
	}
	builder := Stage{Name: "builder", Base: BaseNode, Ops: []Op{
		Workdir{Path: "/src"},
		CopySrc{From: "frontend/package.json", To: "/src/package.json"},
		CopySrc{From: "frontend/package-lock.json", To: "/src/package-lock.json"},
		npmCI,
		CopySrc{From: "frontend", To: "/src", Dir: true, Exclude: []string{"node_modules", "dist", "e2e", "tests", "**/*.test.js"}},
		Run{Args: []string{"npm", "run", "build"}},
	}}
	uid := fmt.Sprintf("%d:%d", FrontendUID, FrontendUID)
	runtime := Stage{Name: "runtime", Base: BaseNginx, Ops: []Op{
		CopyStage{Stage: "builder", From: "/src/dist", To: "/usr/share/nginx/html", Dir: true},
		CopySrc{From: "nginx/nginx.prod.conf", To: "/etc/nginx/nginx.conf"},
		CopySrc{From: "scripts/docker-entrypoint.sh", To: "/usr/local/bin/kidney-entrypoint.sh"},
		// The bundle keeps no trace of the npm packages inside it; the lock file that
		// built it does, so the SBOM (ci/sbom) lists them (its dev dependencies are
		// marked as such and left out). Outside the web root: nginx does not serve it.
		CopySrc{From: "frontend/package-lock.json", To: FrontendLockfile},
		// Only env-config.js is writable by nginx: the entrypoint rewrites
		// it at every start; everything else it serves stays root-owned.
		Run{Args: []string{"sh", "-c", "rm -f /etc/nginx/conf.d/default.conf" +
			" && chmod 0755 /usr/local/bin/kidney-entrypoint.sh" +
			" && touch /usr/share/nginx/html/env-config.js" +
			" && chown " + uid + " /usr/share/nginx/html/env-config.js" +
			" && mkdir -p /tmp/nginx && chown " + uid + " /tmp/nginx"}},
	}}
	return Image{
		Name:   "frontend",
		Tag:    "kidney_genetics_frontend:latest",
		Stages: []Stage{builder, runtime},
		Config: Config{
			User:         uid,
			Env:          []KV{{"PATH", systemPath}},
			Entrypoint:   []string{"/usr/local/bin/kidney-entrypoint.sh"},
			Cmd:          []string{"nginx", "-g", "daemon off;"},
			ExposedPorts: []string{fmt.Sprintf("%d/tcp", FrontendPort)},
			StopSignal:   "SIGQUIT",
			Healthcheck: &Healthcheck{
				Test:     []string{"CMD", "wget", "-q", "-O", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d/health", FrontendPort)},
				Interval: 30, Timeout: 10, StartPeriod: 5, Retries: 3,
			},
			Labels: withTitle(o, "kidney_genetics_frontend"),
		},
	}
}

func withTitle(o Options, title string) map[string]string {
	l := Labels(o.Revision, o.Created, title)
	l["org.kidney-genetics.profile"] = string(o.Profile)
	return l
}
