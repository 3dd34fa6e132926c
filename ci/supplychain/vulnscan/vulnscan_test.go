package vulnscan_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anchore/syft/syft/file"
	"github.com/anchore/syft/syft/linux"
	"github.com/anchore/syft/syft/pkg"
	"github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"

	"github.com/kidney-genetics/kidney-genetics-db/ci/supplychain/vulnscan"
	"github.com/kidney-genetics/kidney-genetics-db/ci/supplychain/vulnscan/vulntest"
)

// The advisories of the FIXTURE database every test scans against (made-up IDs).
var advisories = []vulntest.Advisory{
	{ID: "CVE-2099-0001", Ecosystem: "debian:12", Package: "libfixture", Constraint: "< 1.2-3", FixedIn: "1.2-3", Severity: "high"},
	{ID: "GHSA-fixt-py00-0001", Ecosystem: "python", Package: "fixture-py", Constraint: ">= 1.0.0, < 2.0.0", FixedIn: "2.0.0", Severity: "critical"},
	{ID: "GHSA-fixt-js00-0001", Ecosystem: "npm", Package: "fixture-js", Constraint: "< 3.1.0", FixedIn: "3.1.0", Severity: "low"},
	{ID: "CVE-2099-0002", Ecosystem: "debian:12", Package: "libmedium", Constraint: "< 2.0-1", FixedIn: "2.0-1", Severity: "medium"},
}

func openFixture(t *testing.T) *vulnscan.DB {
	t.Helper()
	dir := t.TempDir()
	vulntest.WriteDB(t, dir, advisories...)
	db, err := vulnscan.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func deb(name, version string) pkg.Package {
	return withID(pkg.Package{
		Name: name, Version: version, Type: pkg.DebPkg,
		PURL:      "pkg:deb/debian/" + name + "@" + version + "?arch=amd64&distro=debian-12",
		Locations: file.NewLocationSet(file.NewLocation("/var/lib/dpkg/status")),
		Metadata:  pkg.DpkgDBEntry{Package: name, Version: version, Architecture: "amd64"},
	})
}

func python(name, version string) pkg.Package {
	return withID(pkg.Package{
		Name: name, Version: version, Type: pkg.PythonPkg, Language: pkg.Python,
		PURL:      "pkg:pypi/" + name + "@" + version,
		Locations: file.NewLocationSet(file.NewLocation("/opt/venv/lib/python3.11/site-packages/" + name + "-" + version + ".dist-info/METADATA")),
		Metadata:  pkg.PythonPackage{Name: name, Version: version},
	})
}

func npm(name, version string) pkg.Package {
	return withID(pkg.Package{
		Name: name, Version: version, Type: pkg.NpmPkg, Language: pkg.JavaScript,
		PURL:      "pkg:npm/" + name + "@" + version,
		Locations: file.NewLocationSet(file.NewLocation("/app/node_modules/" + name + "/package.json")),
		Metadata:  pkg.NpmPackage{Name: name, Version: version},
	})
}

func withID(p pkg.Package) pkg.Package {
	p.SetID()
	return p
}

// image is an SBOM as ci/sbom makes it for a Debian 12 based image.
func image(service string, pkgs ...pkg.Package) *sbom.SBOM {
	return &sbom.SBOM{
		Artifacts: sbom.Artifacts{
			Packages: pkg.NewCollection(pkgs...),
			LinuxDistribution: &linux.Release{
				ID: "debian", VersionID: "12", VersionCodename: "bookworm", Name: "Debian GNU/Linux",
				PrettyName: "Debian GNU/Linux 12 (bookworm)",
			},
		},
		Source: source.Description{Name: "kgci/" + service, Version: "sha256:0000", Metadata: source.ImageMetadata{UserInput: "kgci/" + service}},
	}
}

func scan(t *testing.T, db *vulnscan.DB, s *sbom.SBOM, opt vulnscan.Options) *vulnscan.Report {
	t.Helper()
	r, err := db.Scan(context.Background(), "backend", s, opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestScanMatchesEachEcosystem(t *testing.T) {
	db := openFixture(t)
	tests := []struct {
		name       string
		vulnerable pkg.Package
		fixed      pkg.Package
		id         string
		severity   string
		namespace  string
	}{
		{"deb", deb("libfixture", "1.2-2"), deb("libfixture", "1.2-3"), "CVE-2099-0001", "high", "debian:distro:debian:12"},
		{"python", python("fixture-py", "1.5.0"), python("fixture-py", "2.0.0"), "GHSA-fixt-py00-0001", "critical", "github:language:python"},
		{"npm", npm("fixture-js", "3.0.9"), npm("fixture-js", "3.1.0"), "GHSA-fixt-js00-0001", "low", "github:language:javascript"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := scan(t, db, image("backend", tt.vulnerable), vulnscan.Options{FailOn: vulnscan.Critical})
			if len(r.Findings) != 1 {
				t.Fatalf("vulnerable %s %s: want 1 finding, got %+v", tt.vulnerable.Name, tt.vulnerable.Version, r.Findings)
			}
			f := r.Findings[0]
			if f.ID != tt.id || f.Severity != tt.severity || f.Namespace != tt.namespace ||
				f.Package != tt.vulnerable.Name || f.Version != tt.vulnerable.Version || f.Type != tt.name {
				t.Errorf("finding = %+v", f)
			}
			if len(f.FixedIn) != 1 || f.FixedIn[0] != tt.fixed.Version {
				t.Errorf("FixedIn = %v, want [%s]", f.FixedIn, tt.fixed.Version)
			}
			if f.Location == "" || len(f.URLs) == 0 || f.Description == "" {
				t.Errorf("finding lacks location, URLs or description: %+v", f)
			}

			r = scan(t, db, image("backend", tt.fixed), vulnscan.Options{FailOn: vulnscan.Negligible})
			if len(r.Findings) != 0 || !r.Passed() {
				t.Errorf("fixed %s %s: want no finding, got %+v", tt.fixed.Name, tt.fixed.Version, r.Findings)
			}
		})
	}
}

func TestScanDebianSourcePackage(t *testing.T) {
	// Debian's tracker records source packages; a binary package built from libfixture
	// must match through its source name.
	db := openFixture(t)
	p := deb("libfixture1", "1.2-2")
	p.Metadata = pkg.DpkgDBEntry{Package: "libfixture1", Source: "libfixture", Version: "1.2-2", Architecture: "amd64"}
	r := scan(t, db, image("backend", withID(p)), vulnscan.Options{})
	if len(r.Findings) != 1 || r.Findings[0].ID != "CVE-2099-0001" || r.Findings[0].Package != "libfixture1" {
		t.Fatalf("findings = %+v", r.Findings)
	}
}

func TestScanRefusesUnknownDistro(t *testing.T) {
	// Without a distro grype matches no OS package at all: a silent pass the gate must not give.
	db := openFixture(t)
	s := image("backend", deb("libfixture", "1.2-2"))
	s.Artifacts.LinuxDistribution = &linux.Release{ID: "fixtureos", VersionID: "1"}
	if _, err := db.Scan(context.Background(), "backend", s, vulnscan.Options{}); err == nil || !strings.Contains(err.Error(), "distro") {
		t.Errorf("Scan of an unknown distro: %v", err)
	}
}

func TestFailOn(t *testing.T) {
	db := openFixture(t)
	s := image("backend", deb("libmedium", "1.9-1"))
	if r := scan(t, db, s, vulnscan.Options{FailOn: vulnscan.High}); !r.Passed() || len(r.Findings) != 1 {
		t.Errorf("medium finding with FailOn high: Passed = %v, findings %+v", r.Passed(), r.Findings)
	}
	r := scan(t, db, s, vulnscan.Options{FailOn: vulnscan.Medium})
	if r.Passed() || len(r.Blocking()) != 1 || r.Blocking()[0].ID != "CVE-2099-0002" {
		t.Errorf("medium finding with FailOn medium: Passed = %v, blocking %+v", r.Passed(), r.Blocking())
	}
}

func TestIgnore(t *testing.T) {
	db := openFixture(t)
	now := time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)
	s := image("backend", deb("libfixture", "1.2-2"), python("fixture-py", "1.5.0"))
	valid := vulnscan.Rule{ID: "CVE-2099-0001", Package: "libfixture", Reason: "only used at build time", Expires: "2026-03-15"}
	expired := vulnscan.Rule{ID: "GHSA-fixt-py00-0001", Reason: "waiting for upstream", Expires: "2026-03-14"}
	otherPkg := vulnscan.Rule{ID: "GHSA-fixt-py00-0001", Package: "libfixture", Reason: "wrong package", Expires: "2027-01-01"}

	r := scan(t, db, s, vulnscan.Options{FailOn: vulnscan.High, Now: now, Ignore: []vulnscan.Rule{valid}})
	var ignored, counted []vulnscan.Finding
	for _, f := range r.Findings {
		if f.IgnoredBy != nil {
			ignored = append(ignored, f)
		} else {
			counted = append(counted, f)
		}
	}
	if len(ignored) != 1 || ignored[0].ID != "CVE-2099-0001" || *ignored[0].IgnoredBy != valid {
		t.Errorf("ignored = %+v", ignored)
	}
	if len(counted) != 1 || counted[0].ID != "GHSA-fixt-py00-0001" {
		t.Errorf("counted = %+v", counted)
	}

	// Only the python finding is left to fail; an expired rule and a rule for another
	// package leave it blocking.
	r = scan(t, db, s, vulnscan.Options{FailOn: vulnscan.High, Now: now, Ignore: []vulnscan.Rule{valid, expired, otherPkg}})
	if r.Passed() || len(r.Blocking()) != 1 || r.Blocking()[0].ID != "GHSA-fixt-py00-0001" {
		t.Errorf("blocking = %+v", r.Blocking())
	}
	if len(r.Expired) != 1 || r.Expired[0] != expired {
		t.Errorf("Expired = %+v, want [%+v]", r.Expired, expired)
	}

	r = scan(t, db, s, vulnscan.Options{FailOn: vulnscan.High, Now: now, Ignore: []vulnscan.Rule{valid,
		{ID: "GHSA-fixt-py00-0001", Package: "fixture-py", Reason: "not reachable", Expires: "2026-04-01"}}})
	if !r.Passed() || len(r.Findings) != 2 {
		t.Errorf("all findings ignored: Passed = %v, findings %+v", r.Passed(), r.Findings)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vulnscan-ignore.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadIgnore(t *testing.T) {
	path := writeFile(t, `ignore:
  - id: CVE-2099-0001
    package: libfixture
    reason: only used at build time
    expires: 2026-06-30
  - id: GHSA-fixt-py00-0001
    reason: "not reachable: no untrusted input"
    expires: "2026-07-01"
`)
	rules, err := vulnscan.LoadIgnore(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []vulnscan.Rule{
		{ID: "CVE-2099-0001", Package: "libfixture", Reason: "only used at build time", Expires: "2026-06-30"},
		{ID: "GHSA-fixt-py00-0001", Reason: "not reachable: no untrusted input", Expires: "2026-07-01"},
	}
	if len(rules) != len(want) || rules[0] != want[0] || rules[1] != want[1] {
		t.Errorf("rules = %+v", rules)
	}

	if rules, err := vulnscan.LoadIgnore(writeFile(t, "")); err != nil || len(rules) != 0 {
		t.Errorf("empty file: %v, %v", rules, err)
	}
}

func TestLoadIgnoreRejects(t *testing.T) {
	const first = "ignore:\n  - id: CVE-2099-0001\n    reason: fine\n    expires: 2026-06-30\n"
	tests := []struct {
		name, entry string
		want        []string
	}{
		{"missing reason", "  - id: CVE-2099-0009\n    expires: 2026-06-30\n",
			[]string{"ignore[1] (id CVE-2099-0009)", "missing reason", "reason:"}},
		{"empty reason", "  - id: CVE-2099-0009\n    reason: \"  \"\n    expires: 2026-06-30\n",
			[]string{"ignore[1] (id CVE-2099-0009)", "missing reason"}},
		{"missing expires", "  - id: CVE-2099-0009\n    reason: fine\n",
			[]string{"ignore[1] (id CVE-2099-0009)", "missing expires", "expires:"}},
		{"invalid expires", "  - id: CVE-2099-0009\n    reason: fine\n    expires: 30.06.2026\n",
			[]string{"ignore[1] (id CVE-2099-0009)", `expires "30.06.2026" is not a date`, "YYYY-MM-DD"}},
		{"unknown key", "  - id: CVE-2099-0009\n    pacakge: libfoo\n    reason: fine\n    expires: 2026-06-30\n",
			[]string{"ignore[1] (id CVE-2099-0009)", `unknown key "pacakge"`, "valid keys are id, package, reason, expires"}},
		{"missing id", "  - reason: fine\n    expires: 2026-06-30\n",
			[]string{"ignore[1]", "missing id"}},
		{"unknown top-level key", "ignored: []\n", []string{"ignored"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, first+tt.entry)
			_, err := vulnscan.LoadIgnore(path)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append(tt.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := vulnscan.LoadIgnore(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestOpenWithoutDatabase(t *testing.T) {
	dir := t.TempDir()
	_, err := vulnscan.Open(dir)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{dir, "kgci-supplychain vulndb update --dir " + dir, "--vuln-db"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestOpenRejectsTamperedDatabase(t *testing.T) {
	dir := t.TempDir()
	vulntest.WriteDB(t, dir, advisories...)
	f, err := os.OpenFile(filepath.Join(dir, "6", "vulnerability.db"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("tampered")
	_ = f.Close()
	if _, err := vulnscan.Open(dir); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("Open of a tampered database: %v", err)
	}
}

func TestReportNamesDatabase(t *testing.T) {
	dir := t.TempDir()
	vulntest.WriteDB(t, dir, advisories...)
	db, err := vulnscan.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := scan(t, db, image("backend"), vulnscan.Options{})
	if r.DB.Dir != dir || time.Since(r.DB.Built) > time.Hour || !strings.HasPrefix(r.DB.SchemaVersion, "v6.") {
		t.Errorf("DB = %+v", r.DB)
	}
}

func TestWriteSARIF(t *testing.T) {
	db := openFixture(t)
	now := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
	rule := vulnscan.Rule{ID: "GHSA-fixt-js00-0001", Reason: "dev dependency only", Expires: "2026-12-31"}
	opt := vulnscan.Options{FailOn: vulnscan.High, Now: now, Ignore: []vulnscan.Rule{rule}}
	backend, err := db.Scan(context.Background(), "backend", image("backend", deb("libfixture", "1.2-2"), python("fixture-py", "1.5.0")), opt)
	if err != nil {
		t.Fatal(err)
	}
	frontend, err := db.Scan(context.Background(), "frontend", image("frontend", deb("libfixture", "1.2-2"), npm("fixture-js", "3.0.0")), opt)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := vulnscan.WriteSARIF(&buf, []*vulnscan.Report{backend, frontend}); err != nil {
		t.Fatal(err)
	}

	var doc struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Rules []struct {
						ID         string         `json:"id"`
						Properties map[string]any `json:"properties"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				Level     string `json:"level"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
					} `json:"physicalLocation"`
				} `json:"locations"`
				Suppressions []struct {
					Kind          string `json:"kind"`
					Justification string `json:"justification"`
				} `json:"suppressions"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("SARIF is not JSON: %v\n%s", err, buf.String())
	}
	if doc.Version != "2.1.0" || len(doc.Runs) != 1 {
		t.Fatalf("version %q, %d runs", doc.Version, len(doc.Runs))
	}
	run := doc.Runs[0]
	var ruleIDs []string
	for _, r := range run.Tool.Driver.Rules {
		ruleIDs = append(ruleIDs, r.ID)
		if r.Properties["security-severity"] == nil {
			t.Errorf("rule %s has no security-severity", r.ID)
		}
	}
	// CVE-2099-0001 is in both images: one rule, two results.
	if got := strings.Join(ruleIDs, " "); got != "GHSA-fixt-py00-0001 CVE-2099-0001 GHSA-fixt-js00-0001" {
		t.Errorf("rules = %s", got)
	}
	if len(run.Results) != 4 {
		t.Fatalf("%d results, want 4", len(run.Results))
	}
	suppressed := 0
	for _, res := range run.Results {
		if len(res.Locations) != 1 || res.Locations[0].PhysicalLocation.ArtifactLocation.URI == "" {
			t.Errorf("result %s has no location", res.RuleID)
		}
		if len(res.Suppressions) > 0 {
			suppressed++
			if res.RuleID != rule.ID || res.Suppressions[0].Kind != "external" || !strings.Contains(res.Suppressions[0].Justification, rule.Reason) {
				t.Errorf("suppressed result = %+v", res)
			}
		}
		wantLevel := map[string]string{"CVE-2099-0001": "error", "GHSA-fixt-py00-0001": "error", "GHSA-fixt-js00-0001": "note"}[res.RuleID]
		if res.Level != wantLevel {
			t.Errorf("%s: level %q, want %q", res.RuleID, res.Level, wantLevel)
		}
	}
	if suppressed != 1 {
		t.Errorf("%d suppressed results, want 1", suppressed)
	}
}

func TestParseSeverity(t *testing.T) {
	for in, want := range map[string]vulnscan.Severity{"high": vulnscan.High, "Critical": vulnscan.Critical, " negligible ": vulnscan.Negligible, "unknown": vulnscan.Unknown} {
		if got, err := vulnscan.ParseSeverity(in); err != nil || got != want {
			t.Errorf("ParseSeverity(%q) = %v, %v", in, got, err)
		}
	}
	_, err := vulnscan.ParseSeverity("severe")
	if err == nil || !strings.Contains(err.Error(), "negligible, low, medium, high, critical") {
		t.Errorf("ParseSeverity(severe): %v", err)
	}
}
