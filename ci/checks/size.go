package checks

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sync/errgroup"

	"github.com/kidney-genetics/kidney-genetics-db/ci/budget"
	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

// countWriter counts bytes written.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// measureImage returns the sizes of the image under test: uncompressed is the sum of its
// layer tars; compressed is what gzip (BuildKit's default layer compression, default
// level) makes of them, i.e. what a registry push transfers. `docker save` stores layers
// uncompressed, so the compressed figure has to be computed.
func measureImage(ctx context.Context, tarPath, name string) (budget.Actual, error) {
	img, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		return budget.Actual{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return budget.Actual{}, err
	}
	comp := make([]int64, len(layers))
	uncomp := make([]int64, len(layers))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for i, l := range layers {
		g.Go(func() error {
			rc, err := l.Uncompressed()
			if err != nil {
				return err
			}
			defer rc.Close()
			cw := &countWriter{}
			zw, _ := gzip.NewWriterLevel(cw, gzip.DefaultCompression)
			n, err := io.Copy(zw, &ctxReader{ctx, rc})
			if err != nil {
				return err
			}
			if err := zw.Close(); err != nil {
				return err
			}
			comp[i], uncomp[i] = cw.n, n
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return budget.Actual{}, err
	}
	a := budget.Actual{Image: name}
	for i := range layers {
		a.Compressed += comp[i]
		a.Uncompressed += uncomp[i]
	}
	return a, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// sizeBudgets measures the images under test and compares them with budgets.yaml for the
// profile they were built with.
var sizeBudgets = Check{
	Name:    "size.budgets",
	Docker:  true,
	Timeout: 2 * time.Minute,
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
		var actual []budget.Actual
		for _, svc := range []string{dockerstack.Backend, dockerstack.Frontend} {
			l := e.imageLoad(svc)
			if l.err != nil {
				return failf("could not read the %s image: %v", svc, l.err)
			}
			a, err := measureImage(ctx, l.tar, svc)
			if err != nil {
				return failf("measuring the %s image: %v", svc, err)
			}
			actual = append(actual, a)
		}
		vs := b.Evaluate(profile, actual)
		table := budget.Table(vs)
		if err := budget.Check(vs); err != nil {
			return failf("%v (profile %s, %s). Make the image smaller (what does the runtime stage copy? see the layer sizes from `kgci build`), or raise the budget in %s with the measured value and a reason", err, profile, e.BudgetFile, e.BudgetFile).with(table)
		}
		var parts []string
		for _, v := range vs {
			parts = append(parts, fmt.Sprintf("%s %s %s/%s", v.Image, v.Metric, budget.FormatSize(v.Actual), budget.FormatSize(v.Limit)))
		}
		return passf("within the %s budgets of %s: %s", profile, e.BudgetFile, strings.Join(parts, ", ")).with(table)
	},
}
