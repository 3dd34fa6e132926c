package dockerstack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProbeCommandIsWhatDockerRuns(t *testing.T) {
	cmd, err := ProbeCommand(&HealthConfig{Test: []string{"CMD", "curl", "-fsS", "http://127.0.0.1:8000/api/health"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"curl", "-fsS", "http://127.0.0.1:8000/api/health"}, cmd, "CMD: the arguments, no shell")

	cmd, err = ProbeCommand(&HealthConfig{Test: []string{"CMD-SHELL", `pg_isready -U "${POSTGRES_USER}"`}})
	require.NoError(t, err)
	assert.Equal(t, []string{"/bin/sh", "-c", `pg_isready -U "${POSTGRES_USER}"`}, cmd, "CMD-SHELL: the container's shell expands the variables")

	for _, hc := range []*HealthConfig{nil, {}, {Test: []string{"NONE"}}} {
		_, err := ProbeCommand(hc)
		assert.ErrorIs(t, err, ErrNoHealthcheck, "%v", hc)
	}
	_, err = ProbeCommand(&HealthConfig{Test: []string{"CMD"}})
	assert.ErrorContains(t, err, "has no command")
	_, err = ProbeCommand(&HealthConfig{Test: []string{"SHELL", "true"}})
	assert.ErrorContains(t, err, `unknown health check form ["SHELL" "true"]`)
}

// probeDocker is a docker CLI whose `exec` prints FAKE_OUT, sleeps FAKE_SLEEP seconds and
// exits FAKE_EXIT, logging its arguments. The sleep is exec'd: killed at the timeout, it
// leaves no child holding the output open.
func probeDocker(t *testing.T) (*Docker, string) {
	dir := t.TempDir()
	bin, log := filepath.Join(dir, "docker"), filepath.Join(dir, "calls")
	require.NoError(t, os.WriteFile(bin, []byte(`#!/bin/sh
echo "$*" >> "`+log+`"
[ "$1" = exec ] || exit 3
echo "$FAKE_OUT"
[ -z "$FAKE_SLEEP" ] || exec sleep "$FAKE_SLEEP"
exit "${FAKE_EXIT:-0}"
`), 0o755))
	return &Docker{Bin: bin}, log
}

func TestProbe(t *testing.T) {
	d, log := probeDocker(t)
	ctx := context.Background()
	hc := &HealthConfig{Test: []string{"CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/health"}, Timeout: int64(10 * time.Second)}

	t.Setenv("FAKE_OUT", "ok")
	p, err := d.Probe(ctx, "kgci-r1-frontend", hc)
	require.NoError(t, err)
	assert.True(t, p.OK())
	assert.Equal(t, 10*time.Second, p.Timeout, "the health check's own timeout")
	calls, err := os.ReadFile(log)
	require.NoError(t, err)
	assert.Equal(t, "exec kgci-r1-frontend /bin/sh -c wget -q -O /dev/null http://127.0.0.1:8080/health\n", string(calls))

	t.Setenv("FAKE_OUT", "curl: (22) The requested URL returned error: 404")
	t.Setenv("FAKE_EXIT", "22")
	p, err = d.Probe(ctx, "kgci-r1-backend", &HealthConfig{Test: []string{"CMD", "curl", "-fsS", "http://127.0.0.1:8000/nope"}})
	require.NoError(t, err, "a failing probe is a result")
	assert.False(t, p.OK())
	assert.Equal(t, 22, p.ExitCode)
	assert.Equal(t, dockerProbeTimeout, p.Timeout, "Docker's default when the check sets none")
	assert.Equal(t, "exit 22: curl: (22) The requested URL returned error: 404", p.String())

	t.Setenv("FAKE_EXIT", "0")
	t.Setenv("FAKE_SLEEP", "5")
	p, err = d.Probe(ctx, "kgci-r1-backend", &HealthConfig{Test: []string{"CMD", "sleep", "5"}, Timeout: int64(200 * time.Millisecond)})
	require.NoError(t, err, "a probe that outlives its timeout is a failed probe, as Docker counts it")
	assert.True(t, p.TimedOut)
	assert.False(t, p.OK())
	assert.Contains(t, p.String(), "timed out after 200ms")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = d.Probe(cctx, "kgci-r1-backend", hc)
	assert.ErrorIs(t, err, context.Canceled, "the caller's end is an error, not a failed probe")

	_, err = d.Probe(ctx, "kgci-r1-backend", &HealthConfig{Test: []string{"NONE"}})
	assert.ErrorIs(t, err, ErrNoHealthcheck)
}

func TestFailingStreakCountsOnlyProbesAfterTheAnswer(t *testing.T) {
	t0 := time.Now()
	at := func(s float64, exit int) ProbeResult {
		return ProbeResult{Start: t0.Add(time.Duration(s * float64(time.Second))), ExitCode: exit, Output: "out"}
	}
	probes := []ProbeResult{at(1, 7), at(2, 7), at(3, 22), at(4, 22)}
	assert.Equal(t, 2, failingStreak(probes, t0.Add(2500*time.Millisecond)), "probes from before the service answered do not count")
	assert.Equal(t, 4, failingStreak(probes, time.Time{}))
	assert.Equal(t, 0, failingStreak(append(probes, at(5, 0)), time.Time{}), "a success ends the streak")
	assert.Equal(t, 1, failingStreak(append(probes, at(5, 0), ProbeResult{Start: t0.Add(6 * time.Second), TimedOut: true}), time.Time{}), "a timeout is a failure")

	log := probeLog(probes)
	assert.Equal(t, 3, strings.Count(log, "\n")+1, "the last three")
	assert.NotContains(t, log, "exit 7: out\n  exit 7", "the oldest is left out")
	assert.True(t, strings.HasSuffix(log, "exit 22: out"))
	assert.Empty(t, probeLog(nil))
}
