package dockerstack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNoHealthcheck: the container has no health check to run (none, or NONE).
var ErrNoHealthcheck = errors.New("the container has no health check")

// dockerProbeTimeout is Docker's own default when a HEALTHCHECK sets no --timeout.
const dockerProbeTimeout = 30 * time.Second

// ProbeResult is one run of a container's health check command.
type ProbeResult struct {
	Start    time.Time
	Took     time.Duration
	ExitCode int
	Output   string
	// TimedOut: the command outlived the health check's own timeout, which Docker counts
	// as a failed probe.
	TimedOut bool
	Timeout  time.Duration
}

// OK is what Docker counts as a healthy probe.
func (r ProbeResult) OK() bool { return !r.TimedOut && r.ExitCode == 0 }

// String is one line of a probe log, in the form `docker inspect` shows Docker's.
func (r ProbeResult) String() string {
	if r.TimedOut {
		return fmt.Sprintf("timed out after %s (the health check's timeout)", r.Timeout)
	}
	return fmt.Sprintf("exit %d: %s", r.ExitCode, strings.TrimSpace(r.Output))
}

// ProbeCommand is the command Docker's health monitor runs for a health check: CMD's
// arguments as they are, CMD-SHELL's string under /bin/sh -c.
func ProbeCommand(hc *HealthConfig) ([]string, error) {
	if hc == nil || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
		return nil, ErrNoHealthcheck
	}
	switch hc.Test[0] {
	case "CMD":
		if len(hc.Test) < 2 {
			return nil, fmt.Errorf("health check %q has no command", hc.Test)
		}
		return hc.Test[1:], nil
	case "CMD-SHELL":
		return []string{"/bin/sh", "-c", strings.Join(hc.Test[1:], " ")}, nil
	}
	return nil, fmt.Errorf("unknown health check form %q (want CMD, CMD-SHELL or NONE)", hc.Test)
}

// Probe runs the container's health check command once, inside the running container,
// as Docker's health monitor does: the container's user and environment, bounded by the
// check's own timeout (Docker's 30 s when it sets none). A failing or timed-out command
// is a result, not an error; an error means it could not be run, or ctx ended.
func (d *Docker) Probe(ctx context.Context, container string, hc *HealthConfig) (ProbeResult, error) {
	cmd, err := ProbeCommand(hc)
	if err != nil {
		return ProbeResult{}, err
	}
	r := ProbeResult{Start: time.Now(), Timeout: dockerProbeTimeout}
	if hc.Timeout > 0 {
		r.Timeout = time.Duration(hc.Timeout)
	}
	pctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	res, err := d.Exec(pctx, container, cmd...)
	r.Took = time.Since(r.Start)
	if err != nil {
		if ctx.Err() == nil && pctx.Err() != nil {
			r.TimedOut = true
			return r, nil
		}
		return r, err
	}
	r.ExitCode, r.Output = res.ExitCode, res.Output()
	return r, nil
}
