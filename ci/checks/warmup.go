package checks

import (
	"context"
	"sync"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

// warmUps is the background work WarmUp started; Close ends it before it stops what
// that work made.
type warmUps struct {
	mu     sync.Mutex
	closed bool
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// customStartBound bounds the warm-up start of the custom frontend (the checks that use
// it wait for that start rather than their own).
const customStartBound = 40 * time.Second

// WarmUp is dockerstack.Options.Started for test-e2e: once the stack's frontend has
// started (so the backend is healthy), it starts in the background what the selected
// checks share: Chromium, and the frontend started with customEnv (its nginx resolves the
// backend at start). They start while the stack's frontend waits for its health check,
// when the cores are mostly idle (vmstat: 47-81% idle over that second, measured when
// Docker ran the probe), instead of inside the first check that needs them. Started at
// "backend healthy" instead, they slowed nginx's own start past that probe (frontend
// healthy in 2.3-2.4 s, not 1.8).
func (e *Env) WarmUp(s *dockerstack.Stack, svc string, list []Check) {
	if svc != dockerstack.Frontend {
		return
	}
	var browser, custom bool
	for _, c := range list {
		browser = browser || c.usesBrowser
		custom = custom || c.usesCustom
	}
	w := &e.warm
	w.mu.Lock()
	defer w.mu.Unlock()
	// One warm-up per run: Up starts the frontend once.
	if w.closed || w.cancel != nil || !browser && !custom {
		return
	}
	parent := e.RunCtx
	if parent == nil {
		parent = context.Background()
	}
	var ctx context.Context
	ctx, w.cancel = context.WithCancel(parent)
	if custom {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			cctx, stop := context.WithTimeout(ctx, customStartBound)
			defer stop()
			e.customFrontendOn(cctx, s)
		}()
	}
	if browser {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			_ = e.browser.start() // a failure is kept and reported by the first browser check
		}()
	}
}

// Close stops what the run's checks shared (Chromium, the custom frontend), after
// ending any warm-up still under way. Run calls it when the checks are done; test-e2e
// calls it too, for runs that end before the checks (an interrupted start).
func (e *Env) Close() {
	w := &e.warm
	w.mu.Lock()
	w.closed = true
	if w.cancel != nil {
		w.cancel()
	}
	w.mu.Unlock()
	w.wg.Wait()
	e.custom.close()
	e.browser.close()
}
