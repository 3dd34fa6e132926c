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
	// Not the Docker engine: the compose file of the stack test-e2e runs, which it
	// reads without starting anything. In a URL-only run (kgci check), `kgci policy`
	// does the same on the files.
	Docker:       true,
	readsCompose: true,
	Run: func(_ context.Context, e *Env) Outcome {
		p, err := policy.Architecture()
		if err != nil {
			return failf("%v", err)
		}
		c := e.Compose
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
			return violations(vs, "in the compose files")
		}
		return passf("%s follow ci/policy/architecture.yaml (%d services, %d documented deviations)", strings.Join(checked, " and "), len(p.Services), len(p.Deviations))
	},
}

// policyRuntime judges the running containers of the stack against the architecture, not
// against the compose file: what Docker actually applied (a capability, a network, a port,
// log rotation) is what users would get. ci/policy holds the rules; this only reads
// `docker inspect` into its terms.
var policyRuntime = Check{
	Name:         "policy.runtime",
	Docker:       true,
	NeedsRunning: dockerstack.Order,
	Run: func(ctx context.Context, e *Env) Outcome {
		p, err := policy.Architecture()
		if err != nil {
			return failf("%v", err)
		}
		rt, err := running(ctx, e.Stack)
		if err != nil {
			return failf("reading the running stack: %v", err)
		}
		if vs := p.CheckRuntime(rt); len(vs) > 0 {
			return violations(vs, "by the running containers")
		}
		var names []string
		for _, svc := range dockerstack.Order {
			names = append(names, rt.Services[svc].Name)
		}
		return passf("the running containers %s follow ci/policy/architecture.yaml: users, cap_drop ALL, no-new-privileges, networks (the internal one internal), health checks, %s log rotation %s x %s, the data volume, ports on 127.0.0.1 only (host ports picked by Docker: e2e_stack)",
			strings.Join(names, ", "), p.Logging.Driver, p.Logging.MaxSize, p.Logging.MaxFile)
	},
}

// running reads the stack's containers and networks into the policy's terms.
func running(ctx context.Context, s *dockerstack.Stack) (policy.Runtime, error) {
	rt := policy.Runtime{Compose: s.Compose, Services: map[string]policy.Running{}, Networks: map[string]policy.RunningNetwork{}}
	for k, v := range s.Networks {
		n, err := s.D.InspectNetwork(ctx, v)
		if err != nil {
			return rt, err
		}
		rt.Networks[k] = policy.RunningNetwork{Name: n.Name, Internal: n.Internal}
	}
	for _, svc := range dockerstack.Order {
		name, ok := s.Container(svc)
		if !ok {
			continue
		}
		info, err := s.D.Inspect(ctx, name)
		if err != nil {
			return rt, err
		}
		rt.Services[svc] = policy.FromInspect(info, s.Networks, s.Volumes)
	}
	return rt, nil
}

// violations is the failed outcome for broken requirements, one per line in the details.
func violations(vs []policy.Violation, what string) Outcome {
	var lines []string
	for _, v := range vs {
		lines = append(lines, v.String())
	}
	return failf("%d requirement(s) of the architecture broken %s: %s", len(vs), what, strings.Join(lines, "; ")).with(strings.Join(lines, "\n"))
}
