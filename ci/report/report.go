// Package report writes check results as JUnit XML (for CI test views), a Markdown summary
// (for $GITHUB_STEP_SUMMARY) and JSON (for programs), all into the results directory.
package report

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/checks"
)

// File names inside the results directory.
const (
	JUnitFile    = "junit.xml"
	MarkdownFile = "summary.md"
	JSONFile     = "results.json"
)

// SchemaVersion identifies the JSON layout below; bump it on incompatible changes.
const SchemaVersion = "kgci.e2e.results/v1"

// Run is one invocation of kgci test-e2e or kgci check.
type Run struct {
	Command  string // "test-e2e" or "check"
	Runtime  string // "docker" (also under Dagger, which runs kgci on its own Docker engine)
	Profile  string // "offline", "upstream", or empty
	RunID    string
	Started  time.Time
	Duration time.Duration
	Results  []checks.Result
	// Logs are files written next to the reports (results/logs/<service>.log), relative
	// to the results directory.
	Logs []string
	// Images are the images the checks ran against, in service order.
	Images []Image
}

// Image is one image under test. Digest is the manifest digest a push of Tarball yields
// (ci/publish computes both the same way), so `kgci publish` can prove it pushes exactly
// what was tested; ID is Docker's image ID (the config digest) of what ran.
type Image struct {
	Service string `json:"service"`
	Ref     string `json:"ref"`
	ID      string `json:"id"`
	Digest  string `json:"digest,omitempty"`
	Tarball string `json:"tarball,omitempty"`
	// What supplychain.* recorded: the SBOM's package count and documents (relative to
	// the results directory) and the vulnerability verdict.
	SBOMPackages int      `json:"sbom_packages,omitempty"`
	SBOM         []string `json:"sbom,omitempty"`
	Scan         string   `json:"scan,omitempty"`
	// Set by `kgci publish` for what it pushed: the provenance attestation and the
	// signature, one line each.
	Provenance string `json:"provenance,omitempty"`
	Signature  string `json:"signature,omitempty"`
}

// Counts of each status.
func (r *Run) Counts() (pass, fail, skip int) {
	for _, x := range r.Results {
		switch x.Status {
		case checks.Pass:
			pass++
		case checks.Fail:
			fail++
		default:
			skip++
		}
	}
	return
}

// Passed is true when no check failed (skips do not fail a run).
func (r *Run) Passed() bool {
	_, f, _ := r.Counts()
	return f == 0
}

// JSON document (results.json), schema "kgci.e2e.results/v1":
//
//	{
//	  "schema":      "kgci.e2e.results/v1",
//	  "command":     "test-e2e" | "check",
//	  "runtime":     "docker",
//	  "profile":     "offline" | "upstream" | "",
//	  "run_id":      string,              // kgci-<run_id>-* were the run's Docker resources
//	  "started":     RFC 3339 timestamp,
//	  "duration_ms": integer,             // wall time of the whole run
//	  "passed":      boolean,             // true iff no check has status "fail"
//	  "counts":      {"pass": n, "fail": n, "skip": n},
//	  "checks": [                         // in report order
//	    {
//	      "name":        "health.through_nginx", // stable; group = text before the first "."
//	      "group":       "health",
//	      "status":      "pass" | "fail" | "skip",
//	      "start_ms":    integer,  // optional: when it began, after the run's start; checks
//	                               // begin as soon as the services they use are healthy
//	      "duration_ms": integer,
//	      "message":     string,   // what was seen; on failure, what to fix
//	      "details":     string    // optional evidence (command output, log tail)
//	    }
//	  ],
//	  "logs": ["logs/backend.log", ...],  // optional, relative to the results directory
//	  "images": [                         // what the checks ran against
//	    {"service": "backend", "ref": "kidney_genetics_backend:latest",
//	     "id": "sha256:...",               // Docker image ID (config digest)
//	     "digest": "sha256:...",           // manifest digest a push of the tarball yields; optional
//	     "tarball": "/path/backend.tar"}   // optional: the file that was loaded
//	  ]
//	}
type jsonDoc struct {
	Schema     string      `json:"schema"`
	Command    string      `json:"command"`
	Runtime    string      `json:"runtime"`
	Profile    string      `json:"profile"`
	RunID      string      `json:"run_id"`
	Started    string      `json:"started"`
	DurationMS int64       `json:"duration_ms"`
	Passed     bool        `json:"passed"`
	Counts     jsonCounts  `json:"counts"`
	Checks     []jsonCheck `json:"checks"`
	Logs       []string    `json:"logs,omitempty"`
	Images     []Image     `json:"images,omitempty"`
}

type jsonCounts struct {
	Pass int `json:"pass"`
	Fail int `json:"fail"`
	Skip int `json:"skip"`
}

type jsonCheck struct {
	Name       string `json:"name"`
	Group      string `json:"group"`
	Status     string `json:"status"`
	StartMS    *int64 `json:"start_ms,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Message    string `json:"message"`
	Details    string `json:"details,omitempty"`
	// Files the check left in the results directory, relative to it (screenshots).
	Files []string `json:"files,omitempty"`
}

// JSON renders results.json.
func JSON(r *Run) ([]byte, error) {
	p, f, s := r.Counts()
	d := jsonDoc{
		Schema: SchemaVersion, Command: r.Command, Runtime: r.Runtime, Profile: r.Profile, RunID: r.RunID,
		Started: r.Started.UTC().Format(time.RFC3339), DurationMS: r.Duration.Milliseconds(),
		Passed: r.Passed(), Counts: jsonCounts{p, f, s}, Logs: r.Logs, Checks: []jsonCheck{},
		Images: r.Images,
	}
	for _, x := range r.Results {
		c := jsonCheck{
			Name: x.Name, Group: x.Group, Status: string(x.Status),
			DurationMS: x.Duration.Milliseconds(), Message: x.Message, Details: x.Details, Files: x.Files,
		}
		if !x.Start.IsZero() && !r.Started.IsZero() {
			ms := max(0, x.Start.Sub(r.Started).Milliseconds())
			c.StartMS = &ms
		}
		d.Checks = append(d.Checks, c)
	}
	b, err := json.MarshalIndent(d, "", "  ")
	return append(b, '\n'), err
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// JUnit renders junit.xml: one <testsuite> per group (in order of first appearance), one
// <testcase> per check. encoding/xml escapes markup and replaces characters XML cannot
// hold (ANSI escapes from container logs) with U+FFFD, so any message is safe.
func JUnit(r *Run) ([]byte, error) {
	p, f, s := r.Counts()
	doc := junitSuites{Name: "kgci " + r.Command, Tests: p + f + s, Failures: f, Skipped: s, Time: secs(r.Duration)}
	idx := map[string]int{}
	for _, x := range r.Results {
		i, ok := idx[x.Group]
		if !ok {
			i = len(doc.Suites)
			idx[x.Group] = i
			doc.Suites = append(doc.Suites, junitSuite{Name: x.Group, Timestamp: r.Started.UTC().Format("2006-01-02T15:04:05")})
		}
		su := &doc.Suites[i]
		c := junitCase{Name: x.Name, Classname: "kgci." + x.Group, Time: secs(x.Duration)}
		switch x.Status {
		case checks.Fail:
			c.Failure = &junitFailure{Message: x.Message, Type: "fail", Text: strings.TrimSpace(x.Message + "\n\n" + x.Details)}
			su.Failures++
		case checks.Skip:
			c.Skipped = &junitSkipped{Message: x.Message}
			su.Skipped++
		default:
			c.SystemOut = x.Message
		}
		su.Tests++
		su.Cases = append(su.Cases, c)
	}
	for i := range doc.Suites {
		var t time.Duration
		for _, x := range r.Results {
			if x.Group == doc.Suites[i].Name {
				t += x.Duration
			}
		}
		doc.Suites[i].Time = secs(t)
	}
	b, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(b, '\n')...), nil
}

// Markdown renders summary.md for $GITHUB_STEP_SUMMARY: a headline, one table row per check
// and, for the first failure, its evidence with the log tail.
func Markdown(r *Run, logTail func(service string) string) []byte {
	var b strings.Builder
	p, f, s := r.Counts()
	icon := "✅"
	if f > 0 {
		icon = "❌"
	}
	title := "kgci " + r.Command
	if r.Profile != "" {
		title += " (" + r.Profile + ")"
	}
	fmt.Fprintf(&b, "## %s %s\n\n", icon, title)
	fmt.Fprintf(&b, "**%d passed, %d failed, %d skipped** in %.1fs · runtime %s", p, f, s, r.Duration.Seconds(), r.Runtime)
	if r.RunID != "" {
		fmt.Fprintf(&b, " · run `%s`", r.RunID)
	}
	b.WriteString("\n\n")
	var first *checks.Result
	for i := range r.Results {
		if r.Results[i].Status == checks.Fail {
			first = &r.Results[i]
			break
		}
	}
	if first != nil {
		fmt.Fprintf(&b, "> [!CAUTION]\n> **First failure: `%s`** — %s\n\n", first.Name, mdInline(first.Message))
	}
	b.WriteString("| | Check | Time | Result |\n|---|---|---:|---|\n")
	for _, x := range r.Results {
		st := map[checks.Status]string{checks.Pass: "✅", checks.Fail: "❌", checks.Skip: "⏭️"}[x.Status]
		name := "`" + x.Name + "`"
		if first != nil && x.Name == first.Name {
			name = "**" + name + "**"
		}
		fmt.Fprintf(&b, "| %s | %s | %.2fs | %s |\n", st, name, x.Duration.Seconds(), mdCell(x.Message))
	}
	if first != nil {
		ev := first.Details
		// A check's own evidence usually holds the log already; otherwise attach the tail
		// of the log of the service the check is about.
		if logTail != nil && ev == "" {
			if svc := serviceOf(first.Name); svc != "" {
				if t := logTail(svc); t != "" && !strings.Contains(ev, t) {
					ev = strings.TrimSpace(ev + "\n\n" + svc + " log (tail):\n" + t)
				}
			}
		}
		if ev != "" {
			fmt.Fprintf(&b, "\n<details open><summary>Evidence for <code>%s</code></summary>\n\n%s\n\n</details>\n", first.Name, fence(ev))
		}
	}
	// Relative links: they open from the results directory (a CI artifact, or the
	// directory `dagger call ... export` wrote).
	var shots []string
	for _, x := range r.Results {
		for _, f := range x.Files {
			if strings.HasSuffix(f, ".png") {
				shots = append(shots, fmt.Sprintf("[`%s`](%s)", x.Name, filepath.ToSlash(f)))
			}
		}
	}
	if len(shots) > 0 {
		fmt.Fprintf(&b, "\nScreenshots: %s\n", strings.Join(shots, " · "))
	}
	if len(r.Images) > 0 {
		b.WriteString("\n| Tested image | Image ID | Manifest digest |\n|---|---|---|\n")
		for _, im := range r.Images {
			d := im.Digest
			if d == "" {
				d = "(not from a tarball)"
			}
			fmt.Fprintf(&b, "| %s `%s` | `%s` | `%s` |\n", im.Service, mdCell(im.Ref), im.ID, d)
		}
	}
	b.WriteString(SupplyChainTable(r.Images))
	if len(r.Logs) > 0 {
		sorted := append([]string(nil), r.Logs...)
		sort.Strings(sorted)
		fmt.Fprintf(&b, "\nContainer logs: %s\n", "`"+strings.Join(sorted, "`, `")+"`")
	}
	return []byte(b.String())
}

// SupplyChainHeading starts the supply-chain section of summary.md; `kgci publish`
// replaces the section when it adds provenance and signatures.
const SupplyChainHeading = "### Supply chain"

// SupplyChainTable is summary.md's per-image supply-chain section: the SBOM's package
// count, provenance, the vulnerability verdict and the signature. Empty without images.
func SupplyChainTable(images []Image) string {
	if len(images) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n" + SupplyChainHeading + "\n\n| Image | SBOM | Provenance | Vulnerability scan | Signature |\n|---|---|---|---|---|\n")
	or := func(s, dflt string) string {
		if s == "" {
			return dflt
		}
		return mdCell(s)
	}
	for _, im := range images {
		sbom := "not made"
		if im.SBOMPackages > 0 {
			sbom = fmt.Sprintf("%d packages", im.SBOMPackages)
			var links []string
			for _, f := range im.SBOM {
				links = append(links, fmt.Sprintf("[%s](%s)", filepath.Base(f), filepath.ToSlash(f)))
			}
			if len(links) > 0 {
				sbom += " (" + strings.Join(links, ", ") + ")"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", im.Service, sbom, or(im.Provenance, "at publish"), or(im.Scan, "not scanned"), or(im.Signature, "at publish"))
	}
	return b.String()
}

// ReplaceSupplyChain rewrites the supply-chain section of a summary.md (what
// SupplyChainTable wrote) for images, e.g. once `kgci publish` knows the provenance
// and signatures. A summary without the section gets it appended.
func ReplaceSupplyChain(md []byte, images []Image) []byte {
	s := string(md)
	table := SupplyChainTable(images)
	i := strings.Index(s, "\n"+SupplyChainHeading+"\n")
	if i < 0 {
		return []byte(strings.TrimRight(s, "\n") + "\n" + table)
	}
	// The section is the heading, a blank line and the table's rows.
	end := i + 1 + len(SupplyChainHeading) + 1
	lines := strings.SplitAfter(s[end:], "\n")
	n := 0
	for j, l := range lines {
		if j == 0 && strings.TrimSpace(l) == "" || strings.HasPrefix(l, "|") {
			n += len(l)
			continue
		}
		break
	}
	return []byte(s[:i] + table + s[end+n:])
}

// serviceOf guesses which service's log explains a failing check.
func serviceOf(name string) string {
	switch {
	case strings.HasSuffix(name, "postgres"):
		return "postgres"
	case strings.Contains(name, "frontend"), strings.Contains(name, "nginx"), strings.HasPrefix(name, "websocket."), strings.HasPrefix(name, "gzip."):
		return "frontend"
	case strings.Contains(name, "backend"), strings.HasPrefix(name, "health."):
		return "backend"
	}
	return ""
}

// mdCell makes text safe inside a table cell: no row breaks, no column breaks, no HTML.
func mdCell(s string) string {
	s = mdInline(s)
	s = strings.ReplaceAll(s, "|", `\|`)
	return s
}

func mdInline(s string) string {
	s = strings.TrimSpace(stripControl(s))
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\r\n", "<br>", "\n", "<br>", "\r", "<br>")
	return r.Replace(s)
}

// stripControl drops control characters (terminal colour codes from container logs) that
// render as garbage; newlines and tabs stay.
func stripControl(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// fence wraps text in a code fence longer than any backtick run inside it.
func fence(s string) string {
	s = stripControl(s)
	longest, run := 0, 0
	for _, c := range s {
		if c == '`' {
			run++
			if run > longest {
				longest = run
			}
		} else {
			run = 0
		}
	}
	f := strings.Repeat("`", max(3, longest+1))
	return f + "text\n" + s + "\n" + f
}

// Summary is what another step needs of a written results.json.
type Summary struct {
	Schema     string     `json:"schema"`
	Profile    string     `json:"profile"`
	RunID      string     `json:"run_id"`
	Started    time.Time  `json:"started"`
	DurationMS int64      `json:"duration_ms"`
	Passed     bool       `json:"passed"`
	Counts     jsonCounts `json:"counts"`
	Images     []Image    `json:"images"`
}

// ChecksPassed is the number of checks that passed.
func (s *Summary) ChecksPassed() int { return s.Counts.Pass }

// ReadSummary reads results.json from dir.
func ReadSummary(dir string) (*Summary, error) {
	b, err := os.ReadFile(filepath.Join(dir, JSONFile))
	if err != nil {
		return nil, err
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, JSONFile), err)
	}
	if s.Schema != SchemaVersion {
		return nil, fmt.Errorf("%s: schema %q, want %q", filepath.Join(dir, JSONFile), s.Schema, SchemaVersion)
	}
	return &s, nil
}

// Write writes the three reports into dir and returns their paths.
func Write(dir string, r *Run, logTail func(string) string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	j, err := JUnit(r)
	if err != nil {
		return nil, err
	}
	js, err := JSON(r)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{JUnitFile: j, JSONFile: js, MarkdownFile: Markdown(r, logTail)}
	var out []string
	for _, n := range []string{JUnitFile, MarkdownFile, JSONFile} {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, files[n], 0o644); err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}

// AppendStepSummary appends the Markdown to $GITHUB_STEP_SUMMARY when it is set.
func AppendStepSummary(md []byte) error {
	p := os.Getenv("GITHUB_STEP_SUMMARY")
	if p == "" {
		return nil
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(md, '\n'))
	return err
}
