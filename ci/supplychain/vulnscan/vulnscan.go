// Package vulnscan is kgci's vulnerability gate: it decides whether an image may ship given
// the known vulnerabilities of the packages inside it.
//
// It matches the SBOM that ci/sbom already made, not the image again, so the gate judges
// exactly the package list that is published next to the image. Matching is grype's, used as
// a library (its matchers and its v6 database), because version semantics (Debian epochs and
// backports, PEP 440, npm ranges) and distro fix data are where hand-written scanners go
// wrong. The database is a local directory that only Update (run by the GitHub workflow)
// downloads into: a build never reaches for the network, and the report names the database
// it was judged against, so a verdict can be reproduced.
//
// Exceptions live in a reviewed ignore file where every entry needs a reason and an expiry
// date: an accepted risk is revisited instead of silently lasting forever, and an expired
// entry stops ignoring anything and is reported.
package vulnscan

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/supplyjson"
)

// Severity orders vulnerabilities as grype does: Unknown sorts below Negligible, so a
// threshold never blocks on a finding whose severity no source has rated.
type Severity int

const (
	Unknown Severity = iota
	Negligible
	Low
	Medium
	High
	Critical
)

// One list for kgci (which checks --fail-on before any work) and this package.
var severityNames = supplyjson.Severities

func (s Severity) String() string {
	if s < Unknown || s > Critical {
		return fmt.Sprintf("Severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity reads a severity name, case-insensitively (the --fail-on flag's value).
func ParseSeverity(s string) (Severity, error) {
	if i := slices.Index(severityNames, strings.ToLower(strings.TrimSpace(s))); i >= 0 {
		return Severity(i), nil
	}
	return Unknown, fmt.Errorf("unknown severity %q: valid values are %s", s, strings.Join(severityNames, ", "))
}

// severityOf reads the severity grype reports; anything unrecognised counts as Unknown.
func severityOf(s string) Severity {
	v, err := ParseSeverity(s)
	if err != nil {
		return Unknown
	}
	return v
}

// Options tune one Scan.
type Options struct {
	// FailOn is the lowest severity that blocks; the zero value, Unknown, blocks on every
	// finding, so forgetting to set it errs on the strict side.
	FailOn Severity
	// Ignore are the accepted exceptions (see LoadIgnore).
	Ignore []Rule
	// Now decides which rules have expired; zero means time.Now().
	Now time.Time
}

// Finding is one vulnerability matched in one package.
type Finding struct {
	ID string
	// Severity is grype's rating for this record ("critical", ..., "unknown").
	Severity string
	Package  string
	Version  string
	// Type is syft's package type: "deb", "python", "npm", ...
	Type string
	// Location is where in the image the package was found (e.g. /var/lib/dpkg/status).
	Location string
	// Namespace is the database record the match came from, e.g. "debian:distro:debian:12"
	// or "github:language:python".
	Namespace   string
	FixedIn     []string
	Description string
	URLs        []string
	// IgnoredBy is the ignore rule that accepted this finding; nil when it counts.
	IgnoredBy *Rule
}

// Report is the outcome for one image.
type Report struct {
	Service  string
	Findings []Finding
	// Expired are ignore rules past their date: they no longer ignore anything, and are
	// listed so that someone renews or removes them.
	Expired []Rule
	FailOn  Severity
	DB      DBInfo
}

// DBInfo names the database a report was judged against.
type DBInfo struct {
	Dir           string
	Built         time.Time
	SchemaVersion string
}

// Blocking returns the findings that fail the gate: not ignored, and at or above FailOn.
func (r *Report) Blocking() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if r.Blocks(f) {
			out = append(out, f)
		}
	}
	return out
}

// Blocks reports whether one finding fails the gate.
func (r *Report) Blocks(f Finding) bool {
	return f.IgnoredBy == nil && severityOf(f.Severity) >= r.FailOn
}

// Passed reports whether nothing blocks.
func (r *Report) Passed() bool { return len(r.Blocking()) == 0 }
