package e2etest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/checks"
	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/report"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// spdxPackages reads an SPDX 2.3 JSON document's packages as name -> versions.
func spdxPackages(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			Name        string `json:"name"`
			VersionInfo string `json:"versionInfo"`
		} `json:"packages"`
	}
	require.NoError(t, json.Unmarshal(b, &doc), path)
	require.Equal(t, "SPDX-2.3", doc.SPDXVersion, path)
	out := map[string][]string{}
	for _, p := range doc.Packages {
		out[p.Name] = append(out[p.Name], p.VersionInfo)
	}
	return out
}

// inImage runs a command in a throwaway container of the image, as root, without its
// entrypoint: the versions the SBOM claims are checked against what the image says.
func inImage(t *testing.T, e *env, ref string, cmd ...string) string {
	t.Helper()
	out, err := e.d.Run(context.Background(), append([]string{"run", "--rm", "--user", "0", "--network", "none", "--entrypoint", cmd[0], ref}, cmd[1:]...)...)
	require.NoError(t, err, "%s %v", ref, cmd)
	return strings.TrimSpace(out)
}

// The SBOM lists the packages the images really hold, at the versions the images
// themselves report (Python's metadata, nginx -v) or the lock file pins.
func TestSBOMListsWhatTheImagesHold(t *testing.T) {
	t.Parallel()
	e := setup(t)
	res := e.run(t, Config{Checks: []string{"supplychain.sbom"}})
	r, ok := res.Check("supplychain.sbom")
	require.True(t, ok)
	require.Equal(t, checks.Pass, r.Status, r.Message)
	assert.Nil(t, res.Stack, "an SBOM is made from the images: no containers are started for it")
	_, started := res.Check("startup.postgres")
	assert.False(t, started, "no startup results without a stack")
	dir := resultsDir(res)
	refs := ImageRefs(e.profile, e.tag)

	backend := spdxPackages(t, filepath.Join(dir, checks.SBOMDir, "backend.spdx.json"))
	for _, dist := range []string{"fastapi", "asyncpg", "uvicorn", "starlette", "pydantic"} {
		v := inImage(t, e, refs[dockerstack.Backend], "/opt/venv/bin/python", "-c", "import importlib.metadata as m; print(m.version('"+dist+"'))")
		assert.Contains(t, backend[dist], v, "backend SBOM: %s should be %s (the venv's metadata)", dist, v)
	}
	assert.NotEmpty(t, backend["libc6"], "backend SBOM: Debian packages from dpkg's status")

	frontend := spdxPackages(t, filepath.Join(dir, checks.SBOMDir, "frontend.spdx.json"))
	nginxV := inImage(t, e, refs[dockerstack.Frontend], "sh", "-c", "nginx -v 2>&1") // "nginx version: nginx/1.22.1"
	_, nginxV, ok = strings.Cut(nginxV, "nginx/")
	require.True(t, ok, "nginx -v: %q", nginxV)
	found := false
	for _, v := range frontend["nginx"] {
		found = found || strings.HasPrefix(v, nginxV)
	}
	assert.True(t, found, "frontend SBOM: nginx %v should start with %s (nginx -v)", frontend["nginx"], nginxV)
	var lock struct {
		Packages map[string]struct{ Version string } `json:"packages"`
	}
	b, err := os.ReadFile(filepath.Join(e.root, "frontend", "package-lock.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &lock))
	assert.Contains(t, frontend["vue"], lock.Packages["node_modules/vue"].Version, "frontend SBOM: vue as the lock file pins it")
	assert.Empty(t, frontend["vite"], "vite is a dev dependency: not bundled, not listed")

	for _, im := range res.Report.Images {
		assert.Positive(t, im.SBOMPackages, im.Service)
		assert.Len(t, im.SBOM, 3, im.Service)
	}
	md, err := os.ReadFile(filepath.Join(dir, report.MarkdownFile))
	require.NoError(t, err)
	assert.Contains(t, string(md), report.SupplyChainHeading)
	assert.Regexp(t, `\| backend \| \d+ packages \(\[backend.spdx.json\]`, string(md))
}

// A second run on the same images takes the SBOMs from the cache, the same documents,
// and says so; with the cache turned off it catalogs again.
func TestSBOMCacheGivesTheSameDocuments(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cache := t.TempDir()
	var docs [3][]byte
	for i, dir := range []string{cache, cache, "none"} {
		res := e.run(t, Config{Checks: []string{"supplychain.sbom"}, SBOMCache: dir})
		r, ok := res.Check("supplychain.sbom")
		require.True(t, ok)
		require.Equal(t, checks.Pass, r.Status, r.Message)
		if i == 1 {
			assert.Contains(t, r.Message, "backend: ")
			assert.Equal(t, 2, strings.Count(r.Message, "from the cache (same image and tool binary)"), r.Message)
		} else {
			assert.NotContains(t, r.Message, "from the cache", "run %d", i)
		}
		b, err := os.ReadFile(filepath.Join(resultsDir(res), checks.SBOMDir, "backend.syft.json"))
		require.NoError(t, err)
		docs[i] = b
	}
	assert.Equal(t, docs[0], docs[1], "the cached SBOM is the one the first run wrote")
	assert.NotEmpty(t, docs[2])
	entries, err := os.ReadDir(cache)
	require.NoError(t, err)
	assert.Len(t, entries, 2, "one entry per image")
}

// A frontend that lost the lock file it was built from still runs, but its SBOM would
// silently list no npm package: the check must say so.
func TestFaultFrontendWithoutItsLockfile(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	id := dockerstack.NewRunID()
	ref := "kgci-fault/" + id + ":nolock"
	cname := "kgci-derive-" + id
	_, err := e.d.Run(ctx, "run", "--name", cname, "--user", "0", "--entrypoint", "rm", ImageRefs(e.profile, e.tag)[dockerstack.Frontend], "-f", spec.FrontendLockfile)
	require.NoError(t, err)
	defer e.d.Run(ctx, "rm", "-f", cname)
	_, err = e.d.Run(ctx, "commit", "--change", `ENTRYPOINT ["/usr/local/bin/kidney-entrypoint.sh"]`, "--change", `CMD ["nginx", "-g", "daemon off;"]`, "--change", "USER 101:101", cname, ref)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = e.d.Run(context.Background(), "rmi", "-f", ref) })

	res := e.run(t, Config{Checks: []string{"supplychain.sbom"}, Images: map[string]string{dockerstack.Frontend: ref}})
	requireRed(t, res, "supplychain.sbom", "the SBOM misses what the image holds", "frontend: no npm packages", spec.FrontendLockfile)
}

// The vulnerability gate against a FIXTURE database (the real one cannot be downloaded
// here): made-up advisories naming packages at versions the images really hold. The
// gate must turn supplychain.vulnerabilities red for the one at or above the threshold,
// write SARIF, and pass once that one is accepted in the ignore file, while an expired
// entry is reported and ignores nothing.
func TestFaultVulnerablePackageInTheImage(t *testing.T) {
	t.Parallel()
	e := setup(t)
	db := fixtureDB(t, e,
		// fastapi as installed in /opt/venv (any version below 999).
		advisory{ID: "GHSA-kgci-fixt-0001", Ecosystem: "python", Package: "fastapi", Constraint: "< 999.0", FixedIn: "999.0", Severity: "high"},
		// libssl3 in both images comes from Debian's openssl source package.
		advisory{ID: "CVE-2099-0002", Ecosystem: "debian:12", Package: "openssl", Constraint: "< 99.0", FixedIn: "99.0", Severity: "medium"},
		// A version the lock file does not pin: must not match.
		advisory{ID: "GHSA-kgci-fixt-0003", Ecosystem: "npm", Package: "vue", Constraint: "< 1.0.0", FixedIn: "1.0.0", Severity: "critical"},
	)
	noIgnores := filepath.Join(t.TempDir(), "ignore.yaml")
	require.NoError(t, os.WriteFile(noIgnores, []byte("ignore: []\n"), 0o644))
	res := e.run(t, Config{Checks: []string{"supplychain.vulnerabilities"}, VulnDB: db, VulnIgnore: noIgnores, VulnFailOn: "high"})
	r := requireRed(t, res, "supplychain.vulnerabilities", "known vulnerabilities at or above high", "backend: high GHSA-kgci-fixt-0001 in fastapi", "fixed in 999.0", noIgnores)
	assert.NotContains(t, r.Message, "GHSA-kgci-fixt-0003", "vue is not at an affected version")
	assert.NotContains(t, r.Message, "CVE-2099-0002", "medium is below the threshold")
	sarif, err := os.ReadFile(filepath.Join(resultsDir(res), checks.VulnFile))
	require.NoError(t, err)
	assert.Contains(t, string(sarif), `"GHSA-kgci-fixt-0001"`)
	assert.Contains(t, string(sarif), `"CVE-2099-0002"`, "findings below the threshold are reported too")
	for _, im := range res.Report.Images {
		want := map[string]string{dockerstack.Backend: "fail: 1 blocking", dockerstack.Frontend: "pass: 0 blocking"}[im.Service]
		assert.Contains(t, im.Scan, want, im.Service)
	}

	accepted := filepath.Join(t.TempDir(), "ignore.yaml")
	require.NoError(t, os.WriteFile(accepted, []byte(`ignore:
  - id: GHSA-kgci-fixt-0001
    package: fastapi
    reason: fixture advisory, accepted to test the ignore file
    expires: 2999-12-31
  - id: CVE-2099-0002
    reason: an accepted risk whose date has passed
    expires: 2020-01-01
`), 0o644))
	res = e.run(t, Config{Checks: []string{"supplychain.vulnerabilities"}, VulnDB: db, VulnIgnore: accepted, VulnFailOn: "high"})
	g, ok := res.Check("supplychain.vulnerabilities")
	require.True(t, ok)
	require.Equal(t, checks.Pass, g.Status, g.Message)
	// The backend also holds openssl's packages (medium, below the threshold).
	assert.Regexp(t, `backend pass: 0 blocking at or above high, \d+ found, 1 ignored`, g.Message)
	assert.Contains(t, g.Message, "CVE-2099-0002 (expired 2020-01-01)")
}

// Without a database the gate says it scanned nothing: a skip, never a pass.
func TestVulnerabilityGateWithoutDatabaseSkips(t *testing.T) {
	t.Parallel()
	e := setup(t)
	res := e.run(t, Config{Checks: []string{"supplychain.vulnerabilities"}})
	r, ok := res.Check("supplychain.vulnerabilities")
	require.True(t, ok)
	assert.Equal(t, checks.Skip, r.Status)
	assert.Contains(t, r.Message, "--vuln-db")
}

// advisory is ci/supplychain/vulnscan/vulntest.Advisory, which this module cannot import.
type advisory struct{ ID, Ecosystem, Package, Constraint, FixedIn, Severity string }

// fixtureDB writes a FIXTURE grype database of made-up advisories with the supply-chain
// module's fixturedb command (grype's own writer and import) and returns its directory.
func fixtureDB(t *testing.T, e *env, adv ...advisory) string {
	t.Helper()
	dir := t.TempDir()
	in, err := json.Marshal(adv)
	require.NoError(t, err)
	cmd := exec.Command("go", "run", "./vulnscan/vulntest/fixturedb", dir)
	cmd.Dir = filepath.Join(e.root, "ci", "supplychain")
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "fixturedb: %s", out)
	return dir
}
