// Package supplyjson is what kgci-supplychain prints and kgci reads: the SBOM and
// vulnerability results, one JSON document per call.
//
// kgci-supplychain is a module of its own (ci/supplychain) because syft and grype need
// a newer Go than the Dagger engines we support load modules with (docs/dagger.md, Go
// version); this module stays on the older Go, and the two meet only here. The supply-chain
// module imports this package, so both ends read one definition.
package supplyjson

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Binary is the command's name: kgci looks for it next to its own executable, then on
// PATH, unless KGCI_SUPPLYCHAIN names it.
const Binary = "kgci-supplychain"

// SBOM is the output of `kgci-supplychain sbom`.
type SBOM struct {
	Service  string         `json:"service"`
	Packages int            `json:"packages"`
	ByType   map[string]int `json:"by_type"` // syft's package types: deb, python, npm, binary, ...
	// Files are the documents written: SPDX 2.3 JSON, CycloneDX JSON, syft JSON.
	Files   []string `json:"files"`
	Seconds float64  `json:"seconds"`
	// Cached: the documents are those of an earlier run on the same image by the
	// same tool binary (kgci-supplychain sbom --cache).
	Cached bool `json:"cached,omitempty"`
}

// Scan is the output of `kgci-supplychain scan`.
type Scan struct {
	DB      DB       `json:"db"`
	FailOn  string   `json:"fail_on"`
	Reports []Report `json:"reports"`
	SARIF   string   `json:"sarif"`
}

// DB names the vulnerability database a scan was judged against.
type DB struct {
	Dir    string    `json:"dir"`
	Built  time.Time `json:"built"`
	Schema string    `json:"schema"`
}

// Report is one image's verdict.
type Report struct {
	Service  string    `json:"service"`
	Findings []Finding `json:"findings"`
	// Expired are ignore entries past their date, which ignored nothing.
	Expired []Expired `json:"expired,omitempty"`
}

// Blocking returns the findings that fail the gate.
func (r Report) Blocking() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Blocking {
			out = append(out, f)
		}
	}
	return out
}

// Ignored counts the findings an ignore entry accepted.
func (r Report) Ignored() int {
	n := 0
	for _, f := range r.Findings {
		if f.IgnoredBecause != "" {
			n++
		}
	}
	return n
}

// Finding is one vulnerability in one package.
type Finding struct {
	ID       string   `json:"id"`
	Severity string   `json:"severity"`
	Package  string   `json:"package"`
	Version  string   `json:"version"`
	Type     string   `json:"type"`
	FixedIn  []string `json:"fixed_in,omitempty"`
	Blocking bool     `json:"blocking"`
	// IgnoredBecause is the reason of the ignore entry that accepted it.
	IgnoredBecause string `json:"ignored_because,omitempty"`
}

// Expired is an ignore entry past its date.
type Expired struct {
	ID      string `json:"id"`
	Package string `json:"package,omitempty"`
	Expires string `json:"expires"`
}

// Severities are the vulnerability severities, lowest first, as grype orders them
// (unknown: no source rated it). ci/supplychain/vulnscan ranks by this list.
var Severities = []string{"unknown", "negligible", "low", "medium", "high", "critical"}

// CheckSeverity accepts a --fail-on value (case-insensitive) and returns it lower-cased.
func CheckSeverity(s string) (string, error) {
	l := strings.ToLower(strings.TrimSpace(s))
	if slices.Contains(Severities, l) {
		return l, nil
	}
	return "", fmt.Errorf("unknown severity %q: valid values are %s", s, strings.Join(Severities, ", "))
}
