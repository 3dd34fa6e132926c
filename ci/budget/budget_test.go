package budget

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"450MB": 450_000_000, "60MiB": 60 << 20, "1.5GB": 1_500_000_000, "512 kB": 512_000,
		"2KiB": 2048, "10B": 10, "1GiB": 1 << 30,
	} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for in, msg := range map[string]string{
		"450":   `"450" has no unit; write e.g. "450MB"`,
		"450M":  `unknown unit "M"`,
		"450mb": `unknown unit "mb"`,
		"big":   `is not a size`,
		"-5MB":  `is not a size`,
		"0MB":   `must be a positive size`,
	} {
		_, err := ParseSize(in)
		assert.ErrorContains(t, err, msg, in)
	}
}

const good = `
# comment
offline:
  backend:
    compressed: 80MB
    uncompressed: 250MB
  frontend:
    compressed: 30MiB
upstream:
  backend: {compressed: 200MB, uncompressed: 450MB}
`

func TestParse(t *testing.T) {
	b, err := Parse("budgets.yaml", []byte(good))
	require.NoError(t, err)
	assert.Equal(t, Limits{Compressed: 80e6, Uncompressed: 250e6}, b.Profiles["offline"]["backend"])
	assert.Equal(t, Limits{Compressed: 30 << 20}, b.Profiles["offline"]["frontend"])
	assert.Equal(t, int64(450e6), b.Profiles["upstream"]["backend"].Uncompressed)
}

func TestParseErrors(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"bad unit":        {"offline:\n  backend:\n    compressed: 80 megs\n", `budgets.yaml:3: offline.backend.compressed: "80 megs": unknown unit "megs"`},
		"no unit":         {"offline:\n  backend:\n    compressed: 80\n", `budgets.yaml:3: offline.backend.compressed: "80" has no unit`},
		"typo metric":     {"offline:\n  backend:\n    compresed: 80MB\n", `budgets.yaml:3: offline.backend.compresed: unknown limit; use compressed or uncompressed`},
		"typo profile":    {"ofline:\n  backend:\n    compressed: 80MB\n", `budgets.yaml:1: ofline: unknown profile; use offline or upstream`},
		"list not map":    {"offline:\n  - backend\n", `budgets.yaml:2: offline: want a mapping of image name -> limits`},
		"empty limits":    {"offline:\n  backend: {}\n", `offline.backend: no limits given`},
		"nested value":    {"offline:\n  backend:\n    compressed: [1, 2]\n", `offline.backend.compressed: want a size`},
		"not yaml":        {"offline: [\n", `budgets.yaml: not valid YAML`},
		"scalar document": {"450MB\n", `want a mapping of profile -> image`},
		"duplicate image": {"offline:\n  backend: {compressed: 1MB}\n  backend: {compressed: 2MB}\n", `budgets.yaml:3: offline.backend: image listed twice`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("budgets.yaml", []byte(tc.yaml))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "budgets.yaml"))
	assert.ErrorContains(t, err, "--budgets none to skip")
}

func TestEvaluate(t *testing.T) {
	b, err := Parse("budgets.yaml", []byte(good))
	require.NoError(t, err)
	vs := b.Evaluate("offline", []Actual{
		{Image: "frontend", Compressed: 20 << 20, Uncompressed: 900e6}, // only compressed is limited
		{Image: "backend", Compressed: 79e6, Uncompressed: 251e6},
	})
	require.Len(t, vs, 3)
	assert.Equal(t, Verdict{Profile: "offline", Image: "backend", Metric: Compressed, Actual: 79e6, Limit: 80e6, Pass: true}, vs[0])
	assert.False(t, vs[1].Pass)
	assert.Equal(t, "over by 1.0 MB", vs[1].Note)
	assert.True(t, vs[2].Pass)
	assert.False(t, Passed(vs))
	err = Check(vs)
	require.True(t, errors.Is(err, ErrOverBudget))
	assert.Contains(t, err.Error(), "backend uncompressed 251.0 MB > 250.0 MB")

	table := Table(vs)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	require.Len(t, lines, 5)
	assert.Equal(t, "| backend | compressed | 79.0 MB | 80.0 MB | 99% | pass |", lines[2])
	assert.Equal(t, "| backend | uncompressed | 251.0 MB | 250.0 MB | 100% | **FAIL** (over by 1.0 MB) |", lines[3])

	// An image nobody budgeted fails rather than passing silently.
	vs = b.Evaluate("upstream", []Actual{{Image: "frontend", Compressed: 1}})
	require.Len(t, vs, 1)
	assert.False(t, vs[0].Pass)
	assert.Contains(t, vs[0].Note, "add upstream.frontend to budgets.yaml")
	assert.False(t, Passed(nil), "nothing measured is not a pass")

	vs = b.Evaluate("offline", []Actual{{Image: "backend", Compressed: 80e6, Uncompressed: 250e6}})
	assert.True(t, Passed(vs), "at the limit passes")
	assert.NoError(t, Check(vs))
}

// The repository's own budgets.yaml must parse and cover both images in
// both profiles.
func TestRepoBudgets(t *testing.T) {
	p := filepath.Join("..", "..", "budgets.yaml")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("budgets.yaml missing at the repository root: %v", err)
	}
	b, err := Load(p)
	require.NoError(t, err)
	for _, prof := range []string{"offline", "upstream"} {
		for _, img := range []string{"backend", "frontend"} {
			l, ok := b.Profiles[prof][img]
			require.True(t, ok, "%s.%s", prof, img)
			assert.NotZero(t, l.Compressed, "%s.%s.compressed", prof, img)
			assert.NotZero(t, l.Uncompressed, "%s.%s.uncompressed", prof, img)
		}
	}
	// Never looser than the seed's documented ceilings.
	assert.LessOrEqual(t, b.Profiles["upstream"]["backend"].Uncompressed, int64(450e6))
	assert.LessOrEqual(t, b.Profiles["upstream"]["frontend"].Uncompressed, int64(60e6))
}
