package buildkit

// Tests of the two scripts the offline backend builder runs
// (scripts/offline-venv.sh, scripts/check-requirements.py), with the
// machine's Debian python3 and apt: the same tools the python base has.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const debianPython = "/usr/bin/python3"

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	return root
}

func pyproject(t *testing.T, deps ...string) string {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("[project]\nname = \"t\"\nversion = \"0\"\ndependencies = [\n")
	for _, d := range deps {
		sb.WriteString("  \"" + d + "\",\n")
	}
	sb.WriteString("]\n")
	p := filepath.Join(t.TempDir(), "pyproject.toml")
	require.NoError(t, os.WriteFile(p, []byte(sb.String()), 0o644))
	return p
}

func run(t *testing.T, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	}
	require.NoError(t, err, "running %s", name)
	return o.String(), e.String(), 0
}

func needDebianFastAPI(t *testing.T) {
	t.Helper()
	if _, _, code := run(t, debianPython, "-c", "import fastapi, pydantic, starlette, uvicorn, websockets, asyncpg"); code != 0 {
		t.Fatalf("%s lacks the backend's Debian packages; install scripts/deps/backend.apt", debianPython)
	}
}

func TestCheckRequirementsSatisfied(t *testing.T) {
	needDebianFastAPI(t)
	script := filepath.Join(repoRoot(t), "scripts", "check-requirements.py")
	p := pyproject(t, "fastapi>=0.92,<99", "Starlette==0.26.*", "pydantic>=1.10,<3", "uvicorn[standard]!=0.0.1", "websockets>9", "asyncpg<=0.27.0")
	out, errOut, code := run(t, debianPython, script, p)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, "all 6 requirements")
	for _, name := range []string{"fastapi", "Starlette", "pydantic", "uvicorn", "websockets", "asyncpg"} {
		assert.Contains(t, out, "\n"+name+" ", "table row for %s", name)
	}
}

func TestCheckRequirementsUnmet(t *testing.T) {
	needDebianFastAPI(t)
	script := filepath.Join(repoRoot(t), "scripts", "check-requirements.py")
	p := pyproject(t, "fastapi>=0.100", "pydantic>=2,<3", "starlette<0.26", "kidney-no-such-package>=1", "asyncpg>=0.27")
	_, errOut, code := run(t, debianPython, script, p)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "4 unmet requirement(s)")
	assert.Regexp(t, `fastapi>=0.100: installed fastapi 0\.92[.0-9]* does not satisfy >=0.100`, errOut)
	assert.Regexp(t, `pydantic>=2,<3: installed pydantic 1\.10[.0-9]* does not satisfy >=2`, errOut)
	assert.Contains(t, errOut, "starlette<0.26: installed starlette 0.26")
	assert.Contains(t, errOut, "kidney-no-such-package>=1: not installed")
	assert.NotContains(t, errOut, "asyncpg")

	_, errOut, code = run(t, debianPython, script, pyproject(t, "fastapi=>1"))
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "unsupported clause")
	_, _, code = run(t, debianPython, script, filepath.Join(t.TempDir(), "missing.toml"))
	assert.Equal(t, 2, code)
}

// The version comparison without `packaging`, checked clause by clause.
func TestCheckRequirementsVersionLogic(t *testing.T) {
	script := filepath.Join(repoRoot(t), "scripts", "check-requirements.py")
	prog := `
import importlib.util, sys
spec = importlib.util.spec_from_file_location("cr", sys.argv[1])
cr = importlib.util.module_from_spec(spec); spec.loader.exec_module(cr)
cases = [
  ("0.92.0", ">=", "0.92", True), ("0.92.0", "==", "0.92", True), ("0.91.9", ">=", "0.92", False),
  ("1.10.4", "<", "3", True), ("3.0", "<", "3", False), ("2.0.0rc1", ">=", "2", True),
  ("10.4", ">", "9", True), ("10.4", ">", "10.4", False), ("0.27.0", "<=", "0.27", True),
  ("0.26.1", "==", "0.26.*", True), ("0.27.0", "==", "0.26.*", False), ("0.26.1", "!=", "0.26.*", False),
  ("1.4.2", "~=", "1.4", True), ("2.0", "~=", "1.4", False), ("1.3", "~=", "1.4", False),
  ("0.100.0", ">", "0.92", True), ("1.10.4+deb12u1", "==", "1.10.4", True),
]
bad = [c for c in cases if cr.satisfies(c[0], c[1], c[2]) != c[3]]
print(bad)
sys.exit(1 if bad else 0)
`
	out, errOut, code := run(t, debianPython, "-c", prog, script)
	assert.Equal(t, 0, code, "wrong results: %s %s", out, errOut)
}

func TestOfflineVenvUnmapped(t *testing.T) {
	script := filepath.Join(repoRoot(t), "scripts", "offline-venv.sh")
	venv := filepath.Join(t.TempDir(), "venv")
	_, errOut, code := run(t, "sh", script, venv, pyproject(t, "fastapi>=0.92", "requests>=2"))
	assert.NotEqual(t, 0, code)
	assert.Contains(t, errOut, "dependency 'requests'")
	assert.Contains(t, errOut, "debian_package()")
	_, err := os.Stat(venv)
	assert.True(t, os.IsNotExist(err), "fails before creating anything")

	_, errOut, code = run(t, "sh", script, venv)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, errOut, "usage:")
}

// A full run against the apt mirror. On this machine the python3-* packages
// are installed system-wide, which exercises the "already in the base" path;
// the real offline build (python base without them) exercises the download
// path.
func TestOfflineVenvFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("offline-venv.sh runs apt-get as root (it does so inside the build); run the tests as root")
	}
	needDebianFastAPI(t)
	root := repoRoot(t)
	venv := filepath.Join(t.TempDir(), "venv")
	pp := filepath.Join(root, "backend", "pyproject.toml")
	_, errOut, code := run(t, "sh", filepath.Join(root, "scripts", "offline-venv.sh"), venv, pp)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "python3-fastapi")
	assert.Contains(t, errOut, "python3-anyio", "transitive dependencies are listed")

	py := filepath.Join(venv, "bin", "python")
	// Isolated from system site-packages: only what was unpacked counts.
	out, errOut, code := run(t, py, "-c", "import sys, fastapi, starlette, anyio; print(sys.prefix == sys.base_prefix, fastapi.__file__)")
	require.Equal(t, 0, code, errOut)
	assert.True(t, strings.HasPrefix(out, "False "+venv), out)
	out, errOut, code = run(t, py, filepath.Join(root, "scripts", "check-requirements.py"), pp)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "requirements of")
}
