package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/budget"
	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

// countWriter counts bytes written.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// sizeBudgets measures the images under test and compares them with budgets.yaml for the
// profile they were built with.
var sizeBudgets = Check{
	Name:       "size.budgets",
	Docker:     true,
	Slow:       true,
	usesImages: true,
	Timeout:    2 * time.Minute,
	Run: func(ctx context.Context, e *Env) Outcome {
		if e.BudgetFile == "" {
			return skipf("no budgets file given (--budgets)")
		}
		b, err := budget.Load(e.BudgetFile)
		if err != nil {
			return failf("%v", err)
		}
		profile := e.Profile
		if profile == "" {
			profile = "upstream"
		}
		built := readBuildJSON(e.buildJSON())
		var actual []budget.Actual
		var sources []string
		for _, svc := range []string{dockerstack.Backend, dockerstack.Frontend} {
			ref := e.image(svc)
			img, err := e.Docker().InspectImage(ctx, ref)
			if err != nil {
				return failf("%v", err)
			}
			// The build measured the exact blobs; reuse its figures when they describe
			// this very image (same config digest), measure otherwise.
			if b, ok := built[img.ID]; ok {
				actual = append(actual, budget.Actual{Image: svc, Compressed: b.Compressed, Uncompressed: b.Uncompressed})
				sources = append(sources, svc+" from build.json")
				continue
			}
			l := e.imageLoad(svc)
			if l.err != nil {
				return failf("could not read the %s image: %v", svc, l.err)
			}
			if !l.measured {
				return failf("the %s image was not measured (a bug in ci/checks)", svc)
			}
			actual = append(actual, budget.Actual{Image: svc, Compressed: l.ix.Compressed, Uncompressed: l.ix.Uncompressed})
			sources = append(sources, svc+" measured ("+l.source+")")
		}
		vs := b.Evaluate(profile, actual)
		table := budget.Table(vs)
		if err := budget.Check(vs); err != nil {
			return failf("%v (profile %s, %s; %s). Make the image smaller (what does the runtime stage copy? see the layer sizes from `kgci build`), or raise the budget in %s with the measured value and a reason", err, profile, e.BudgetFile, strings.Join(sources, ", "), e.BudgetFile).with(table)
		}
		var parts []string
		for _, v := range vs {
			parts = append(parts, fmt.Sprintf("%s %s %s/%s", v.Image, v.Metric, budget.FormatSize(v.Actual), budget.FormatSize(v.Limit)))
		}
		return passf("within the %s budgets of %s: %s (%s)", profile, e.BudgetFile, strings.Join(parts, ", "), strings.Join(sources, ", ")).with(table)
	},
}

// builtImage is what `kgci build` recorded about one image in build.json.
type builtImage struct {
	Name         string `json:"name"`
	ConfigDigest string `json:"config_digest"`
	Compressed   int64  `json:"compressed_bytes"`
	Uncompressed int64  `json:"uncompressed_bytes"`
}

// readBuildJSON maps config digest (Docker's image ID) to the build's measurements; a
// missing or unreadable file just means "measure".
func readBuildJSON(p string) map[string]builtImage {
	out := map[string]builtImage{}
	b, err := os.ReadFile(p)
	if err != nil {
		return out
	}
	var doc struct {
		Images []builtImage `json:"images"`
	}
	if json.Unmarshal(b, &doc) != nil {
		return out
	}
	for _, im := range doc.Images {
		if im.ConfigDigest != "" && im.Compressed > 0 && im.Uncompressed > 0 {
			out[im.ConfigDigest] = im
		}
	}
	return out
}

func (e *Env) buildJSON() string {
	if e.BuildJSON != "" {
		return e.BuildJSON
	}
	return filepath.Join(e.ResultsDir, "build.json")
}
