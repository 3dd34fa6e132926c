package main

import (
	"context"
	"fmt"
	"os"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/policy"
)

const policySummary = "Check the compose files against the architecture's requirements (ci/policy/architecture.yaml); no engine needed"

func init() {
	register(command{name: "policy", summary: policySummary, run: runPolicy})
}

func runPolicy(_ context.Context, args []string) error {
	fs := newFlags("policy", policySummary+`.

NPM mode: the production file must match every service rule, log rotation,
network and volume of the policy and publish no port. Test mode: the overlay
must publish exactly the documented localhost ports. Each violation names the
requirement and the file and key to fix; deliberate deviations are printed
with their reasons.`)
	prod := fs.String("compose", dockerstack.ProdComposeFile, "production compose file (NPM mode)")
	overlay := fs.String("test-overlay", "docker-compose.test.yml", "test-mode overlay; empty to skip")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	p, err := policy.Architecture()
	if err != nil {
		return err
	}
	c, err := dockerstack.LoadCompose(*prod)
	if err != nil {
		return err
	}
	vs := p.CheckNPM(c)
	if *overlay != "" {
		o, err := dockerstack.LoadCompose(*overlay)
		if err != nil {
			return err
		}
		vs = append(vs, p.CheckTest(o)...)
	}
	for _, d := range p.Deviations {
		fmt.Fprintf(os.Stdout, "deviation: %s -> %s (%s)\n", d.Requirement, d.Ours, d.Why)
	}
	for _, v := range vs {
		fmt.Fprintf(os.Stdout, "FAIL %s\n", v)
	}
	if len(vs) > 0 {
		return fmt.Errorf("%d violation(s) of the architecture policy", len(vs))
	}
	fmt.Fprintf(os.Stdout, "policy: %s and %s follow the architecture (%d services)\n", *prod, *overlay, len(p.Services))
	return nil
}
