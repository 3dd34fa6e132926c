package main

import (
	"context"
	"io"
	"os"

	"github.com/kidney-genetics/kidney-genetics-db/ci/reproduce"
)

const reproduceSummary = "Rerun what CI ran for a commit, in a temporary clone, and show the first failing check"

func init() {
	register(command{name: "reproduce", summary: reproduceSummary, run: func(ctx context.Context, args []string) error {
		return runReproduce(ctx, args, os.Stdout, os.Stderr)
	}})
}

func runReproduce(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reproduce", reproduceSummary+".\n\nThe dagger call arguments are read from "+reproduce.WorkflowPath+
		" at that commit: same functions, same arguments, same profile.\nPublishing steps are never rerun.")
	var o reproduce.Options
	fs.StringVar(&o.Commit, "commit", "HEAD", "commit to reproduce (sha, tag or branch)")
	fs.StringVar(&o.Engine, "engine", "dagger", "dagger: run the workflow's `dagger call`s with the dagger CLI; local: the kgci equivalents (build, then test-e2e on its tarballs) with the same profile")
	fs.StringVar(&o.Results, "results", "", "where to copy the run's results directory (default results/reproduce-<sha>)")
	fs.StringVar(&o.Profile, "profile", "", "override the workflow's --profile (e.g. offline on a machine without registry access); the run then differs from CI in where base images come from")
	fs.BoolVar(&o.Keep, "keep", false, "keep the clone afterwards (its path is printed) to poke around")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return reproduce.Run(ctx, o, stdout, stderr)
}
