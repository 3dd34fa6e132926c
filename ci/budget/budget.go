// Package budget reads image size limits (budgets.yaml at the repository
// root) and compares built images against them.
//
// File shape, per profile and image, sizes in decimal (kB, MB, GB) or binary
// (KiB, MiB, GiB) units:
//
//	offline:
//	  backend:
//	    compressed: 60MB
//	    uncompressed: 200MB
package budget

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Metrics a budget can limit.
const (
	Compressed   = "compressed"
	Uncompressed = "uncompressed"
)

var metrics = []string{Compressed, Uncompressed}

// Limits for one image; zero means "not limited".
type Limits struct {
	Compressed   int64
	Uncompressed int64
}

// Budgets maps profile -> image -> limits.
type Budgets struct {
	File     string
	Profiles map[string]map[string]Limits
}

var units = map[string]float64{
	"B":  1,
	"kB": 1e3, "KB": 1e3,
	"MB":  1e6,
	"GB":  1e9,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
}

const unitHelp = "B, kB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024)"

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)$`)

// ParseSize parses "450MB", "60 MiB", "1.5GB".
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			return 0, fmt.Errorf("%q has no unit; write e.g. \"%sMB\" (units: %s)", s, s, unitHelp)
		}
		return 0, fmt.Errorf("%q is not a size; write a number and a unit, e.g. \"450MB\" or \"60MiB\" (units: %s)", s, unitHelp)
	}
	mul, ok := units[m[2]]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q; use %s", s, m[2], unitHelp)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	b := v * mul
	if b <= 0 || b > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q: a budget must be a positive size", s)
	}
	return int64(math.Round(b)), nil
}

// FormatSize prints bytes in MB with one decimal (budgets and results are
// compared by eye in the same unit).
func FormatSize(b int64) string {
	return fmt.Sprintf("%.1f MB", float64(b)/1e6)
}

// Load reads and validates a budgets file.
func Load(path string) (*Budgets, error) {
	dt, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading size budgets: %w (pass --budgets FILE, or --budgets none to skip)", err)
	}
	return Parse(path, dt)
}

// Parse validates budgets YAML; name is used in error messages.
func Parse(name string, dt []byte) (*Budgets, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(dt))
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("%s: not valid YAML: %w", name, err)
	}
	errf := func(n *yaml.Node, key, format string, a ...any) error {
		return fmt.Errorf("%s:%d: %s: %s", name, n.Line, key, fmt.Sprintf(format, a...))
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: want a mapping of profile -> image -> {compressed, uncompressed}, e.g.\noffline:\n  backend:\n    compressed: 60MB\n    uncompressed: 200MB", name)
	}
	b := &Budgets{File: name, Profiles: map[string]map[string]Limits{}}
	top := root.Content[0]
	for i := 0; i < len(top.Content); i += 2 {
		pk, pv := top.Content[i], top.Content[i+1]
		profile := pk.Value
		if _, dup := b.Profiles[profile]; dup {
			return nil, errf(pk, profile, "profile listed twice")
		}
		if profile != "offline" && profile != "upstream" {
			return nil, errf(pk, profile, "unknown profile; use offline or upstream")
		}
		if pv.Kind != yaml.MappingNode {
			return nil, errf(pv, profile, "want a mapping of image name -> limits")
		}
		imgs := map[string]Limits{}
		for j := 0; j < len(pv.Content); j += 2 {
			ik, iv := pv.Content[j], pv.Content[j+1]
			key := profile + "." + ik.Value
			if _, dup := imgs[ik.Value]; dup {
				return nil, errf(ik, key, "image listed twice")
			}
			if iv.Kind != yaml.MappingNode {
				return nil, errf(iv, key, "want {compressed: SIZE, uncompressed: SIZE}")
			}
			var l Limits
			for k := 0; k < len(iv.Content); k += 2 {
				mk, mv := iv.Content[k], iv.Content[k+1]
				mkey := key + "." + mk.Value
				if mv.Kind != yaml.ScalarNode {
					return nil, errf(mv, mkey, "want a size such as \"60MB\"")
				}
				size, err := ParseSize(mv.Value)
				if err != nil {
					return nil, errf(mv, mkey, "%v", err)
				}
				switch mk.Value {
				case Compressed:
					l.Compressed = size
				case Uncompressed:
					l.Uncompressed = size
				default:
					return nil, errf(mk, mkey, "unknown limit; use %s", strings.Join(metrics, " or "))
				}
			}
			if l.Compressed == 0 && l.Uncompressed == 0 {
				return nil, errf(ik, key, "no limits given; set compressed and/or uncompressed")
			}
			imgs[ik.Value] = l
		}
		b.Profiles[profile] = imgs
	}
	return b, nil
}

// Actual is a measured image.
type Actual struct {
	Image        string
	Compressed   int64
	Uncompressed int64
}

// Verdict is one metric of one image against its budget.
type Verdict struct {
	Profile string `json:"profile"`
	Image   string `json:"image"`
	Metric  string `json:"metric"`
	Actual  int64  `json:"actual"`
	Limit   int64  `json:"limit"` // 0: no budget
	Pass    bool   `json:"pass"`
	Note    string `json:"note,omitempty"`
}

// Evaluate compares every image; an image without a budget fails, so a new
// image cannot slip in unmeasured.
func (b *Budgets) Evaluate(profile string, actual []Actual) []Verdict {
	var out []Verdict
	for _, a := range actual {
		l, ok := b.Profiles[profile][a.Image]
		if !ok {
			out = append(out, Verdict{Profile: profile, Image: a.Image, Metric: Compressed, Actual: a.Compressed,
				Note: fmt.Sprintf("no budget: add %s.%s to %s", profile, a.Image, b.File)})
			continue
		}
		for _, m := range []struct {
			name          string
			actual, limit int64
		}{{Compressed, a.Compressed, l.Compressed}, {Uncompressed, a.Uncompressed, l.Uncompressed}} {
			if m.limit == 0 {
				continue
			}
			v := Verdict{Profile: profile, Image: a.Image, Metric: m.name, Actual: m.actual, Limit: m.limit, Pass: m.actual <= m.limit}
			if !v.Pass {
				v.Note = fmt.Sprintf("over by %s", FormatSize(m.actual-m.limit))
			}
			out = append(out, v)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Image < out[j].Image })
	return out
}

// Passed reports whether every verdict passed.
func Passed(vs []Verdict) bool {
	for _, v := range vs {
		if !v.Pass {
			return false
		}
	}
	return len(vs) > 0
}

// ErrOverBudget is returned (wrapped) by Check when a limit is exceeded.
var ErrOverBudget = errors.New("image size over budget")

// Check returns ErrOverBudget naming the failures, or nil.
func Check(vs []Verdict) error {
	var bad []string
	for _, v := range vs {
		if !v.Pass {
			if v.Limit == 0 {
				bad = append(bad, fmt.Sprintf("%s: %s", v.Image, v.Note))
			} else {
				bad = append(bad, fmt.Sprintf("%s %s %s > %s", v.Image, v.Metric, FormatSize(v.Actual), FormatSize(v.Limit)))
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrOverBudget, strings.Join(bad, "; "))
	}
	return nil
}

// Table renders verdicts as a Markdown table (readable as plain text too).
func Table(vs []Verdict) string {
	var sb strings.Builder
	sb.WriteString("| image | metric | actual | budget | used | result |\n")
	sb.WriteString("|---|---|---:|---:|---:|---|\n")
	for _, v := range vs {
		limit, used := "none", "-"
		if v.Limit > 0 {
			limit = FormatSize(v.Limit)
			used = fmt.Sprintf("%.0f%%", 100*float64(v.Actual)/float64(v.Limit))
		}
		result := "pass"
		if !v.Pass {
			result = "**FAIL**"
			if v.Note != "" {
				result += " (" + v.Note + ")"
			}
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s |\n", v.Image, v.Metric, FormatSize(v.Actual), limit, used, result)
	}
	return sb.String()
}
