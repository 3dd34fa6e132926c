package report

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/checks"
)

// nasty holds everything that breaks naive XML/Markdown writers: markup, quotes, pipes,
// newlines, a terminal escape from a container log, backtick fences.
const nasty = "GET /api/health returned 502 <html>\"bad\" & 'worse' | col\nline2 \x1b[31mred\x1b[0m ```fence```"

func sample() *Run {
	t0 := time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)
	return &Run{
		Command: "test-e2e", Runtime: "docker", Profile: "offline", RunID: "abcd1234", Started: t0, Duration: 12345 * time.Millisecond,
		Results: []checks.Result{
			{Name: "startup.backend", Group: "startup", Status: checks.Pass, Duration: 2 * time.Second, Message: "healthy after 2.0s"},
			{Name: "health.backend_direct", Group: "health", Status: checks.Pass, Start: t0.Add(4321 * time.Millisecond), Duration: 15 * time.Millisecond, Message: "200 ok"},
			{Name: "health.through_nginx", Group: "health", Status: checks.Fail, Duration: 30 * time.Millisecond, Message: nasty, Details: "nginx log tail\n" + nasty},
			{Name: "websocket.upgrade", Group: "websocket", Status: checks.Skip, Message: "not run: frontend is not up"},
			{Name: "gzip.assets", Group: "gzip", Status: checks.Fail, Duration: time.Second, Message: "second failure"},
		},
		Logs: []string{"logs/frontend.log", "logs/backend.log"},
	}
}

func TestJUnitIsValidAndComplete(t *testing.T) {
	b, err := JUnit(sample())
	require.NoError(t, err)
	var doc struct {
		XMLName  xml.Name `xml:"testsuites"`
		Tests    int      `xml:"tests,attr"`
		Failures int      `xml:"failures,attr"`
		Skipped  int      `xml:"skipped,attr"`
		Suites   []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Cases    []struct {
				Name      string `xml:"name,attr"`
				Classname string `xml:"classname,attr"`
				Time      string `xml:"time,attr"`
				Failure   *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
				Skipped *struct {
					Message string `xml:"message,attr"`
				} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	require.NoError(t, xml.Unmarshal(b, &doc), string(b))
	assert.Equal(t, 5, doc.Tests)
	assert.Equal(t, 2, doc.Failures)
	assert.Equal(t, 1, doc.Skipped)
	var groups []string
	for _, s := range doc.Suites {
		groups = append(groups, s.Name)
	}
	assert.Equal(t, []string{"startup", "health", "websocket", "gzip"}, groups, "one suite per group, in order of appearance")
	health := doc.Suites[1]
	assert.Equal(t, 2, health.Tests)
	assert.Equal(t, 1, health.Failures)
	fc := health.Cases[1]
	assert.Equal(t, "health.through_nginx", fc.Name)
	assert.Equal(t, "kgci.health", fc.Classname)
	assert.Equal(t, "0.030", fc.Time)
	require.NotNil(t, fc.Failure)
	// The escape character cannot exist in XML 1.0; everything else survives the round trip.
	want := strings.ReplaceAll(nasty, "\x1b", "\uFFFD")
	assert.Equal(t, want, fc.Failure.Message)
	assert.Contains(t, fc.Failure.Text, "nginx log tail")
	require.NotNil(t, doc.Suites[2].Cases[0].Skipped)
	assert.Equal(t, "not run: frontend is not up", doc.Suites[2].Cases[0].Skipped.Message)
	assert.NotContains(t, string(b), "\x1b")
}

func TestMarkdownTableAndFirstFailure(t *testing.T) {
	md := string(Markdown(sample(), func(svc string) string {
		if svc == "frontend" {
			return "nginx: last log line"
		}
		return ""
	}))
	assert.True(t, strings.HasPrefix(md, "## ❌ kgci test-e2e (offline)"), md)
	assert.Contains(t, md, "**2 passed, 2 failed, 1 skipped** in 12.3s")
	assert.Contains(t, md, "First failure: `health.through_nginx`")
	// Every table row stays one row with the header's column count.
	var rows []string
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "| ") && !strings.HasPrefix(l, "| |") {
			rows = append(rows, l)
		}
	}
	require.Len(t, rows, 5)
	for _, r := range rows {
		cells := strings.Count(strings.ReplaceAll(r, `\|`, ""), "|")
		assert.Equal(t, 5, cells, "row %q", r)
	}
	assert.Contains(t, rows[2], "❌ | **`health.through_nginx`** | 0.03s |")
	assert.Contains(t, rows[2], "&lt;html&gt;")
	assert.Contains(t, rows[2], `\| col<br>line2`)
	assert.Contains(t, rows[3], "⏭️")
	// Evidence block: the fence is longer than the backticks inside, and the log tail of
	// the service the check is about is attached.
	assert.Contains(t, md, "<details open><summary>Evidence for <code>health.through_nginx</code></summary>")
	assert.Contains(t, md, "````text\nnginx log tail")
	assert.NotContains(t, md, "frontend log (tail)", "the check's own evidence is enough")
	assert.NotContains(t, md, "\x1b", "terminal escapes are dropped")
	assert.Contains(t, md, "line2 [31mred[0m")
	assert.Contains(t, md, "Container logs: `logs/backend.log`, `logs/frontend.log`")
}

func TestMarkdownAttachesLogTailWithoutEvidence(t *testing.T) {
	r := sample()
	r.Results[2].Details = ""
	md := string(Markdown(r, func(svc string) string { return svc + ": last log line" }))
	assert.Contains(t, md, "frontend log (tail):\nfrontend: last log line")
}

func TestMarkdownAllPassed(t *testing.T) {
	r := sample()
	r.Results = r.Results[:2]
	md := string(Markdown(r, nil))
	assert.True(t, strings.HasPrefix(md, "## ✅"))
	assert.NotContains(t, md, "First failure")
	assert.NotContains(t, md, "<details")
}

func TestJSONSchema(t *testing.T) {
	b, err := JSON(sample())
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(b, &doc))
	assert.Equal(t, SchemaVersion, doc["schema"])
	assert.Equal(t, "test-e2e", doc["command"])
	assert.Equal(t, "offline", doc["profile"])
	assert.Equal(t, false, doc["passed"])
	assert.Equal(t, float64(12345), doc["duration_ms"])
	assert.Equal(t, "2026-11-25T18:00:00Z", doc["started"])
	assert.Equal(t, map[string]any{"pass": 2.0, "fail": 2.0, "skip": 1.0}, doc["counts"])
	cs := doc["checks"].([]any)
	require.Len(t, cs, 5)
	c := cs[2].(map[string]any)
	assert.Equal(t, "health.through_nginx", c["name"])
	assert.Equal(t, "health", c["group"])
	assert.Equal(t, "fail", c["status"])
	assert.Equal(t, float64(30), c["duration_ms"])
	assert.Equal(t, nasty, c["message"], "JSON keeps the message byte for byte")
	_, hasDetails := cs[0].(map[string]any)["details"]
	assert.False(t, hasDetails, "empty details are omitted")
	assert.Equal(t, float64(4321), cs[1].(map[string]any)["start_ms"], "when the check began, after the run's start")
	_, hasStart := cs[0].(map[string]any)["start_ms"]
	assert.False(t, hasStart, "an unknown start is omitted, not 0")

	empty, err := JSON(&Run{Command: "check", Started: time.Unix(0, 0)})
	require.NoError(t, err)
	assert.Contains(t, string(empty), `"checks": []`, "no checks is an empty list, not null")
	assert.Contains(t, string(empty), `"passed": true`)
}

func TestWriteAndStepSummary(t *testing.T) {
	dir := t.TempDir()
	summary := filepath.Join(dir, "step-summary.md")
	t.Setenv("GITHUB_STEP_SUMMARY", summary)
	files, err := Write(filepath.Join(dir, "results"), sample(), nil)
	require.NoError(t, err)
	require.Len(t, files, 3)
	for _, f := range files {
		st, err := os.Stat(f)
		require.NoError(t, err)
		assert.Positive(t, st.Size())
	}
	md, err := os.ReadFile(filepath.Join(dir, "results", MarkdownFile))
	require.NoError(t, err)
	require.NoError(t, AppendStepSummary(md))
	require.NoError(t, AppendStepSummary(md))
	got, err := os.ReadFile(summary)
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(string(got), "## ❌ kgci test-e2e"), "appends, never overwrites")
}

func TestScreenshotsAreLinkedAndListed(t *testing.T) {
	r := sample()
	r.Results = append(r.Results,
		checks.Result{Name: "browser.genes", Group: "browser", Status: checks.Pass, Message: "ok", Files: []string{"screenshots/browser.genes.png"}},
		checks.Result{Name: "browser.deep_link", Group: "browser", Status: checks.Fail, Message: "404", Files: []string{"screenshots/browser.deep_link.png"}},
	)
	md := string(Markdown(r, nil))
	assert.Contains(t, md, "Screenshots: [`browser.genes`](screenshots/browser.genes.png) · [`browser.deep_link`](screenshots/browser.deep_link.png)")

	b, err := JSON(r)
	require.NoError(t, err)
	var doc struct {
		Checks []struct {
			Name  string
			Files []string
		}
	}
	require.NoError(t, json.Unmarshal(b, &doc))
	last := doc.Checks[len(doc.Checks)-1]
	assert.Equal(t, []string{"screenshots/browser.deep_link.png"}, last.Files)
	assert.Nil(t, doc.Checks[0].Files)

	r.Results = r.Results[:2]
	assert.NotContains(t, string(Markdown(r, nil)), "Screenshots", "no line without pictures")
}

func TestSupplyChainTable(t *testing.T) {
	assert.Empty(t, SupplyChainTable(nil))
	md := SupplyChainTable([]Image{
		{Service: "backend", SBOMPackages: 137, SBOM: []string{"sbom/backend.spdx.json", "sbom/backend.cdx.json"}, Scan: "pass: 0 blocking | 3 below high"},
		{Service: "frontend", Provenance: "SLSA v1 (referrer)", Signature: "cosign, key"},
	})
	assert.Contains(t, md, SupplyChainHeading)
	assert.Contains(t, md, "| backend | 137 packages ([backend.spdx.json](sbom/backend.spdx.json), [backend.cdx.json](sbom/backend.cdx.json)) | at publish | pass: 0 blocking \\| 3 below high | at publish |")
	assert.Contains(t, md, "| frontend | not made | SLSA v1 (referrer) | not scanned | cosign, key |")
}

func TestReplaceSupplyChain(t *testing.T) {
	before := []Image{{Service: "backend", SBOMPackages: 3, Scan: "pass"}}
	md := Markdown(&Run{Command: "test-e2e", Images: before, Logs: []string{"logs/backend.log"}}, nil)
	require.Contains(t, string(md), "| backend | 3 packages | at publish | pass | at publish |")
	after := before
	after[0].Provenance, after[0].Signature = "SLSA provenance v1", "cosign key"
	got := string(ReplaceSupplyChain(md, after))
	assert.Contains(t, got, "| backend | 3 packages | SLSA provenance v1 | pass | cosign key |")
	assert.NotContains(t, got, "at publish")
	assert.Equal(t, 1, strings.Count(got, SupplyChainHeading))
	assert.Contains(t, got, "Container logs: `logs/backend.log`", "what follows the section stays")
	assert.Contains(t, string(ReplaceSupplyChain([]byte("# old summary\n"), after)), SupplyChainHeading, "appended when missing")
}
