package vulnscan

import (
	"crypto/sha256"
	"fmt"
	"io"
	"strings"

	"github.com/owenrumney/go-sarif/sarif"
)

// WriteSARIF writes the reports as one SARIF 2.1.0 run for GitHub code scanning: a rule per
// vulnerability ID and a result per (image, package, vulnerability). Ignored findings are
// kept as suppressed results carrying the rule's reason, so the accepted risk stays visible
// (and reviewable) in the security tab instead of disappearing.
//
// grype's own SARIF presenter is not used: it writes one run per image, makes a rule per
// vulnerability and package, and drops ignored matches. The SARIF types are the library that
// presenter uses.
func WriteSARIF(w io.Writer, reports []*Report) error {
	doc, err := sarif.New(sarif.Version210)
	if err != nil {
		return err
	}
	run := sarif.NewRun("kgci-vulnscan", "https://github.com/anchore/grype")
	// The same ID can be rated differently by different sources (Debian and GitHub, say) and
	// in different images; its rule describes the worst rating seen.
	worst := map[string]Finding{}
	var ids []string
	for _, r := range reports {
		for _, f := range r.Findings {
			prev, seen := worst[f.ID]
			if !seen {
				ids = append(ids, f.ID)
			}
			if !seen || severityOf(f.Severity) > severityOf(prev.Severity) {
				worst[f.ID] = f
			}
		}
	}
	for _, id := range ids {
		addRule(run, worst[id])
	}
	for _, r := range reports {
		for _, f := range r.Findings {
			addResult(run, r.Service, f)
		}
	}
	doc.AddRun(run)
	if err := doc.PrettyWrite(w); err != nil {
		return err
	}
	_, err = io.WriteString(w, "\n")
	return err
}

func addRule(run *sarif.Run, f Finding) {
	sev := severityOf(f.Severity)
	rule := run.AddRule(f.ID).
		WithShortDescription(sarif.NewMultiformatMessageString(fmt.Sprintf("%s (%s)", f.ID, sev))).
		WithProperties(sarif.Properties{
			// GitHub ranks alerts by this CVSS-like score, and only for rules tagged security.
			"security-severity": securityScore[sev],
			"tags":              []string{"security", "vulnerability"},
		})
	if f.Description != "" {
		rule.WithFullDescription(sarif.NewMultiformatMessageString(f.Description))
	}
	if len(f.URLs) > 0 {
		rule.WithHelpURI(f.URLs[0]).WithHelp(f.ID + ": see " + strings.Join(f.URLs, " "))
	}
}

var securityScore = map[Severity]string{Unknown: "0.0", Negligible: "0.1", Low: "3.0", Medium: "5.5", High: "8.0", Critical: "9.5"}

func addResult(run *sarif.Run, service string, f Finding) {
	msg := fmt.Sprintf("%s %s severity vulnerability in %s package %s %s in image %s", f.ID, f.Severity, f.Type, f.Package, f.Version, service)
	if len(f.FixedIn) > 0 {
		msg += "; fixed in " + strings.Join(f.FixedIn, ", ")
	}
	// GitHub needs a file location; the image has no file in the repository, so the path is
	// the package's place in the image under the service's name, as grype does.
	uri := service + "/" + strings.TrimPrefix(f.Location, "/")
	res := run.AddResult(f.ID).
		WithLevel(level(severityOf(f.Severity))).
		WithMessage(sarif.NewTextMessage(msg)).
		WithLocation(sarif.NewLocationWithPhysicalLocation(sarif.NewPhysicalLocation().
			WithArtifactLocation(sarif.NewSimpleArtifactLocation(uri)).
			WithRegion(sarif.NewSimpleRegion(1, 1)))).
		// Without the version, so that an upgrade that is still vulnerable keeps its alert.
		WithPartialFingerPrints(map[string]any{
			"primaryLocationLineHash": fmt.Sprintf("%x:1", sha256.Sum256([]byte(strings.Join([]string{service, f.Type, f.Package, f.Location, f.ID}, "\x00")))),
		})
	if f.IgnoredBy != nil {
		res.WithSuppression(sarif.NewSuppression("external").
			WithStatus("accepted").
			WithJustifcation(f.IgnoredBy.Reason + " (kgci ignore file, expires " + f.IgnoredBy.Expires + ")"))
	}
}

func level(s Severity) string {
	switch {
	case s >= High:
		return "error"
	case s == Medium:
		return "warning"
	}
	return "note"
}
