package checks

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/policy"
)

// policyCompose judges the compose file the stack runs from against the architecture
// (ci/policy/architecture.yaml), not against itself: a drift the stack would faithfully
// reproduce (a capability kept, a port published, log rotation dropped) fails here.
var policyCompose = Check{
	Name: "policy.compose",
	// Not the Docker engine: the compose file of the stack test-e2e runs. Without a
	// stack (kgci check), `kgci policy` does the same on the files.
	Docker: true,
	Run: func(_ context.Context, e *Env) Outcome {
		p, err := policy.Architecture()
		if err != nil {
			return failf("%v", err)
		}
		c := e.Stack.Compose
		vs := p.CheckNPM(c)
		checked := []string{c.Path + " (NPM mode)"}
		// Test mode is part of the architecture too: the overlay must be there.
		overlay := filepath.Join(filepath.Dir(c.Path), dockerstack.TestOverlayFile)
		o, err := dockerstack.LoadCompose(overlay)
		if err != nil {
			return failf("the test-mode overlay %s, beside %s, could not be read: %v", dockerstack.TestOverlayFile, c.Path, err)
		}
		vs = append(vs, p.CheckTest(o)...)
		checked = append(checked, overlay+" (test mode)")
		if len(vs) > 0 {
			var lines []string
			for _, v := range vs {
				lines = append(lines, v.String())
			}
			return failf("%d requirement(s) of the architecture broken: %s", len(vs), strings.Join(lines, "; ")).with(strings.Join(lines, "\n"))
		}
		return passf("%s follow ci/policy/architecture.yaml (%d services, %d documented deviations)", strings.Join(checked, " and "), len(p.Services), len(p.Deviations))
	},
}
