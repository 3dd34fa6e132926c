package main

import (
	"context"
	"fmt"
	"os"

	"github.com/kidney-genetics/kidney-genetics-db/ci/imageconfig"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

const finalizeSummary = "Write an image's runtime configuration from ci/spec into an image tarball (the Dagger path's last build step)"

func init() {
	register(command{name: "finalize", summary: finalizeSummary, run: runFinalize})
}

func runFinalize(_ context.Context, args []string) error {
	fs := newFlags("finalize", finalizeSummary+`.

Dagger's container API cannot set HEALTHCHECK or STOPSIGNAL, so the Dagger
module exports each image it built as a docker-archive and runs this on it: the
config (user, env, entrypoint, command, ports, health check, stop signal,
labels) is written by ci/imageconfig exactly as 'kgci build' writes it, the
layers are kept byte for byte. Prints the new manifest digest.`)
	image := fs.String("image", "", "backend or frontend (required)")
	profile := fs.String("profile", "upstream", "offline or upstream")
	revision := fs.String("revision", "", "revision label")
	created := fs.String("created", "", "creation time label, RFC 3339")
	in := fs.String("in", "", "docker-archive tarball to read (required)")
	out := fs.String("out", "", "docker-archive tarball to write (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *image == "" || *in == "" || *out == "" {
		return fmt.Errorf("--image, --in and --out are required (see --help)")
	}
	p, err := spec.ParseProfile(*profile)
	if err != nil {
		return err
	}
	opts := spec.Options{Profile: p, Revision: *revision, Created: *created}
	if err := opts.Validate(); err != nil {
		return err
	}
	img, err := spec.ByName(opts, *image)
	if err != nil {
		return err
	}
	d, err := imageconfig.Rewrite(*in, *out, img.Tag, img.Config)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "%s %s\n", img.Tag, d)
	return nil
}
