package dockerstack

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// eventsDocker is a fake docker CLI whose `events` waits for the test to write the events
// file, prints it, and then keeps the stream open like the real one. With wrapper set it
// behaves like a wrapper script whose child keeps the pipe open after it is killed.
func eventsDocker(t *testing.T, wrapper bool) (d *Docker, events, args string) {
	dir := t.TempDir()
	events, args = filepath.Join(dir, "events"), filepath.Join(dir, "args")
	pidfile := filepath.Join(dir, "child.pid")
	keep := "exec sleep 60"
	if wrapper {
		keep = "sleep 60 & echo $! > " + pidfile + "; wait"
	}
	bin := filepath.Join(dir, "docker")
	require.NoError(t, os.WriteFile(bin, []byte(`#!/bin/sh
[ "$1" = events ] || exit 1
echo "$*" > `+args+`
while [ ! -f `+events+` ]; do sleep 0.02; done
cat `+events+`
`+keep+`
`), 0o755))
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidfile); err == nil {
			var pid int
			if _, err := fmt.Sscan(string(b), &pid); err == nil {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
	})
	return &Docker{Bin: bin}, events, args
}

func eventLine(name, action string) string {
	return fmt.Sprintf(`{"status":%q,"Type":"container","Action":%q,"Actor":{"ID":"c1","Attributes":{"name":%q,"org.kidney-genetics.kgci.run":"r1"}}}`+"\n", action, action, name)
}

// emit hands the fake its events in one step: it prints the file as soon as it exists.
func emit(t *testing.T, events, lines string) {
	require.NoError(t, os.WriteFile(events+".tmp", []byte(lines), 0o644))
	require.NoError(t, os.Rename(events+".tmp", events))
}

func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func TestWatchWakesOnlyTheContainerWhoseHealthChanged(t *testing.T) {
	d, events, args := eventsDocker(t, false)
	w := startWatch(d, "r1")
	defer w.close()
	pg, be := w.changed("kgci-r1-postgres"), w.changed("kgci-r1-backend")
	require.NotNil(t, pg)
	assert.True(t, pg == w.changed("kgci-r1-postgres"), "two waiters on one container share its wake-up")

	// A probe's exec events and another container's health do not wake postgres' waiter.
	emit(t, events, eventLine("kgci-r1-postgres", "exec_die")+eventLine("kgci-r1-backend", "health_status: healthy"))
	require.True(t, closedWithin(be, 5*time.Second), "backend's health_status wakes its waiter")
	assert.False(t, closedWithin(pg, 100*time.Millisecond), "exec_die of a probe is no reason to inspect")

	a, err := os.ReadFile(args)
	require.NoError(t, err)
	assert.Contains(t, string(a), "--filter label="+LabelRun+"=r1", "only the run's containers")
	assert.Contains(t, string(a), "--since ", "events between the start of the CLI and its subscription are replayed")

	be2 := w.changed("kgci-r1-backend")
	assert.False(t, be == be2, "after a wake-up the next wait is a new one")

	// When the stream ends, every waiter wakes and waits fall back to polling.
	w.close()
	assert.True(t, closedWithin(pg, time.Second))
	assert.True(t, closedWithin(be2, time.Second))
	assert.Nil(t, w.changed("kgci-r1-postgres"), "no stream: the caller polls")
}

func TestWatchDieWakes(t *testing.T) {
	d, events, _ := eventsDocker(t, false)
	w := startWatch(d, "r1")
	defer w.close()
	pg := w.changed("kgci-r1-postgres")
	emit(t, events, eventLine("kgci-r1-postgres", "die"))
	assert.True(t, closedWithin(pg, 5*time.Second), "an exit ends a wait at once")
}

// KGCI_DOCKER may be a wrapper script: killing it leaves its docker child holding the
// pipe. Down (which closes the watch) must still return.
func TestWatchCloseReturnsWhenAWrapperKeepsThePipeOpen(t *testing.T) {
	d, events, _ := eventsDocker(t, true)
	w := startWatch(d, "r1")
	emit(t, events, "")
	time.Sleep(200 * time.Millisecond)
	done := make(chan struct{})
	go func() { w.close(); close(done) }()
	assert.True(t, closedWithin(done, 5*time.Second), "close waited for a pipe that a wrapper's child keeps open")
}

func TestWatchWithoutEngineFallsBackToPolling(t *testing.T) {
	w := startWatch(&Docker{Bin: filepath.Join(t.TempDir(), "no-docker")}, "r1")
	assert.Nil(t, w.changed("kgci-r1-postgres"), "the CLI did not start: poll")
	w.close()
	var none *watch
	assert.Nil(t, none.changed("x"), "a Stack without a watch polls")
	none.close()
	assert.True(t, wakes("health_status: unhealthy"), "unhealthy is a change too")
}
