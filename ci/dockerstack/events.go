package dockerstack

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// watch follows the run's container events (one `docker events` for the whole run), so
// that WaitHealthy wakes the moment a container exits (or Docker's own probe changes its
// health) instead of at its next probe. Polling `docker inspect` instead cost a CLI start
// (about 40 ms of CPU) four times a second per wait, on 2 cores that PostgreSQL's initdb
// needs, and noticed a change up to 250 ms late.
//
// It only wakes waiters: every decision is still taken on `docker inspect` or a probe's
// own result, and a wait that hears nothing inspects again after each failed probe (or on
// every round without a stream), so a lost stream costs time, never a result.
type watch struct {
	mu    sync.Mutex
	alive bool
	next  map[string]chan struct{} // container name -> closed at its next relevant event
	stop  context.CancelFunc
	done  chan struct{}
}

// event is the part of `docker events --format '{{json .}}'` that matters here.
type event struct {
	Action string `json:"Action"`
	Actor  struct {
		Attributes map[string]string `json:"Attributes"`
	} `json:"Actor"`
}

// wakes: the events after which a container's health or state may have changed.
// A probe's exec_* events are not among them: WaitHealthy runs its probes itself and
// has their results, and Docker's own arrive as health_status when they change it.
func wakes(action string) bool {
	return strings.HasPrefix(action, "health_status") || action == "die" || action == "start" || action == "oom"
}

// startWatch follows the events of containers labelled with the run. --since replays
// what happened between this call and the moment the CLI's subscription took hold, so no
// event of a container created after startWatch returns is lost.
func startWatch(d *Docker, runID string) *watch {
	w := &watch{next: map[string]chan struct{}{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	since := fmt.Sprintf("%.9f", float64(time.Now().UnixNano())/1e9)
	out, wait, err := d.Stream(ctx, "events", "--since", since,
		"--filter", "type=container", "--filter", "label="+LabelRun+"="+runID, "--format", "{{json .}}")
	if err != nil {
		cancel()
		w.stop = func() {}
		close(w.done)
		return w
	}
	w.stop = func() {
		cancel()
		// Killing the CLI ends the stream, unless KGCI_DOCKER is a wrapper script whose
		// own child keeps the pipe open: closing our end ends the read in any case.
		if c, ok := out.(io.Closer); ok {
			_ = c.Close()
		}
	}
	w.alive = true
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			var ev event
			if json.Unmarshal(sc.Bytes(), &ev) != nil || !wakes(ev.Action) {
				continue
			}
			w.wake(ev.Actor.Attributes["name"])
		}
		_ = wait()
		w.mu.Lock()
		w.alive = false
		for name, ch := range w.next {
			close(ch)
			delete(w.next, name)
		}
		w.mu.Unlock()
	}()
	return w
}

func (w *watch) wake(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.next[name]; ok {
		close(ch)
		delete(w.next, name)
	}
}

// changed returns a channel closed at the container's next relevant event, or nil when
// no stream is running (the caller then polls). Take it before inspecting, so that an
// event between the inspect and the wait is not missed.
func (w *watch) changed(name string) <-chan struct{} {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.alive {
		return nil
	}
	ch, ok := w.next[name]
	if !ok {
		ch = make(chan struct{})
		w.next[name] = ch
	}
	return ch
}

// close ends the stream and waits for its CLI to exit: nothing of a run outlives Down.
func (w *watch) close() {
	if w == nil {
		return
	}
	w.stop()
	<-w.done
}
