// Package vulntest writes small FIXTURE vulnerability databases for tests.
//
// The real grype database is a download of several hundred megabytes that tests cannot
// fetch, so tests describe the few advisories they need and get a real grype v6 SQLite
// database holding only those. It is written with grype's own v6 writer and installed with
// grype's own import (hydration and checksum file), so vulnscan.Open, grype's reader and
// grype's matchers treat it exactly like a downloaded database: only the data is made up.
package vulntest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v6 "github.com/anchore/grype/grype/db/v6"
	"github.com/anchore/grype/grype/db/v6/installation"
	"github.com/anchore/grype/grype/db/v6/name"
	syftpkg "github.com/anchore/syft/syft/pkg"
)

// Advisory is one fixture advisory: Package in Ecosystem is affected at the versions
// matching Constraint.
type Advisory struct {
	// ID is the vulnerability ID, e.g. "CVE-2099-0001" or "GHSA-xxxx-xxxx-xxxx".
	ID string
	// Ecosystem is "debian:<major>" (e.g. "debian:12", a Debian security tracker record), or a
	// language ecosystem ("python", "npm"; a GitHub advisory record).
	Ecosystem string
	// Package is the package name as its ecosystem spells it (for Debian, the source
	// package, as the Debian tracker records it).
	Package string
	// Constraint is the affected range in the ecosystem's version syntax, e.g. "< 2.0.0".
	Constraint string
	// FixedIn is the first fixed version; empty means not fixed yet.
	FixedIn string
	// Severity is "negligible", "low", "medium", "high" or "critical"; empty means unknown.
	Severity string
}

// WriteDB writes a grype v6 database holding only the advisories into dir, laid out like
// grype's database root (dir/6/vulnerability.db and dir/6/import.json).
func WriteDB(t testing.TB, dir string, advisories ...Advisory) {
	t.Helper()
	if err := Write(dir, advisories...); err != nil {
		t.Fatalf("writing fixture vulnerability database in %s: %v", dir, err)
	}
}

// Write is WriteDB for callers without a testing.TB: the fixturedb command, which the
// root module's end-to-end tests run (they cannot import this module).
func Write(dir string, advisories ...Advisory) error {
	// Written beside dir, not in it (a database directory holds only what grype installs),
	// on the same file system, so that the import can move it into place.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	build, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dir)), ".kgci-fixture-db-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(build)
	w, err := v6.NewWriter(v6.Config{DBDirPath: build})
	if err != nil {
		return err
	}
	if err := addAdvisories(w, advisories); err != nil {
		_ = w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	// Import is what `grype db import` runs: it rebuilds the indexes the writer drops, writes
	// import.json with the checksum Open validates, and moves the database to dir/6.
	cur, err := installation.NewCurator(installation.Config{DBRootDir: dir}, nil)
	if err != nil {
		return err
	}
	return cur.Import(filepath.Join(build, v6.VulnerabilityDBFileName))
}

func addAdvisories(w v6.ReadWriter, advisories []Advisory) error {
	captured := time.Now().UTC()
	// One vulnerability record per (provider, ID), as in the real database, where each
	// record lists every package it affects.
	vulns := map[string]*v6.VulnerabilityHandle{}
	for _, a := range advisories {
		if a.ID == "" || a.Package == "" || a.Constraint == "" {
			return fmt.Errorf("advisory %+v: ID, Package and Constraint are required", a)
		}
		os, pkgType, provider, err := ecosystem(a.Ecosystem)
		if err != nil {
			return fmt.Errorf("advisory %s: %w", a.ID, err)
		}
		v := vulns[provider+"/"+a.ID]
		if v == nil {
			v = &v6.VulnerabilityHandle{
				Name:       a.ID,
				ProviderID: provider,
				Provider:   &v6.Provider{ID: provider, Version: "1", Processor: "kgci-fixture", DateCaptured: &captured},
				Status:     v6.VulnerabilityActive,
				BlobValue: &v6.VulnerabilityBlob{
					ID:          a.ID,
					Description: "fixture advisory " + a.ID,
					References:  []v6.Reference{{URL: "https://example.invalid/" + a.ID}},
				},
			}
			if a.Severity != "" {
				v.BlobValue.Severities = []v6.Severity{{Scheme: v6.SeveritySchemeCHMLN, Value: strings.ToLower(a.Severity)}}
			}
			if err := w.AddVulnerabilities(v); err != nil {
				return fmt.Errorf("advisory %s: %w", a.ID, err)
			}
			vulns[provider+"/"+a.ID] = v
		}
		fix := &v6.Fix{State: v6.NotFixedStatus}
		if a.FixedIn != "" {
			fix = &v6.Fix{State: v6.FixedStatus, Version: a.FixedIn}
		}
		if err := w.AddAffectedPackages(&v6.AffectedPackageHandle{
			VulnerabilityID: v.ID,
			OperatingSystem: os,
			Package:         &v6.Package{Ecosystem: string(pkgType), Name: name.Normalize(a.Package, pkgType)},
			BlobValue: &v6.PackageBlob{Ranges: []v6.Range{{
				Version: v6.Version{Type: string(pkgType), Constraint: a.Constraint},
				Fix:     fix,
			}}},
		}); err != nil {
			return fmt.Errorf("advisory %s: %w", a.ID, err)
		}
	}
	return nil
}

// ecosystem maps an Advisory.Ecosystem to what the real database's transformers write:
// distro records carry the operating system and come from the distro's provider, language
// records carry none and come from GitHub's advisories.
func ecosystem(eco string) (*v6.OperatingSystem, syftpkg.Type, string, error) {
	if distro, major, ok := strings.Cut(eco, ":"); ok {
		if distro != "debian" || major == "" {
			return nil, "", "", fmt.Errorf("ecosystem %q: only debian:<major> is supported for distro records", eco)
		}
		codename := map[string]string{"11": "bullseye", "12": "bookworm", "13": "trixie"}[major]
		return &v6.OperatingSystem{Name: "debian", ReleaseID: "debian", MajorVersion: major, Codename: codename},
			syftpkg.DebPkg, "debian", nil
	}
	switch eco {
	case "python":
		return nil, syftpkg.PythonPkg, "github", nil
	case "npm":
		return nil, syftpkg.NpmPkg, "github", nil
	}
	return nil, "", "", fmt.Errorf("ecosystem %q: want debian:<major>, python or npm", eco)
}
