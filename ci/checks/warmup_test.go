package checks

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

// chromiumPid is the pid of the run's Chromium once WarmUp has started it, 0 before.
func chromiumPid(e *Env) int {
	e.browser.mu.Lock()
	defer e.browser.mu.Unlock()
	if e.browser.ctx == nil {
		return 0
	}
	if c := chromedp.FromContext(e.browser.ctx); c != nil && c.Browser != nil && c.Browser.Process() != nil {
		return c.Browser.Process().Pid
	}
	return 0
}

func TestWarmUpStartsChromiumOnlyForBrowserChecksAndCloseStopsIt(t *testing.T) {
	requireChromium(t)
	e := &Env{RunCtx: context.Background()}
	// Not the frontend, or no check that needs a browser: nothing starts.
	e.WarmUp(nil, dockerstack.Backend, []Check{browserGenes})
	e.WarmUp(nil, dockerstack.Frontend, []Check{healthBackendDirect})
	e.warm.wg.Wait()
	assert.Zero(t, chromiumPid(e))

	// A run interrupted before its checks: Close must still stop the Chromium WarmUp started.
	e.WarmUp(nil, dockerstack.Frontend, []Check{healthBackendDirect, browserGenes})
	e.warm.wg.Wait()
	pid := chromiumPid(e)
	require.NotZero(t, pid, "WarmUp did not start Chromium for a browser check")
	e.Close()
	assert.Zero(t, chromiumPid(e))
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "Chromium (pid %d) outlived Close", pid)

	// After Close, a late WarmUp (Up still running when Ctrl-C ended the run) starts
	// nothing, whether or not one ran before.
	e.WarmUp(nil, dockerstack.Frontend, []Check{browserGenes})
	e.warm.wg.Wait()
	assert.Zero(t, chromiumPid(e))
	late := &Env{RunCtx: context.Background()}
	late.Close()
	late.WarmUp(nil, dockerstack.Frontend, []Check{browserGenes})
	late.warm.wg.Wait()
	assert.Zero(t, chromiumPid(late))
}
