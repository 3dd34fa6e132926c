package dockerstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The inspects, the calls a run makes most (some 40 of a test-e2e run's 100), read the
// engine's HTTP API on its unix socket instead of starting the docker CLI: a CLI start
// costs about 65 ms of CPU (process accounting on the 2-core CI machines), the request
// about a millisecond. Only there: any other host (tcp with TLS, ssh, the CLI's own
// default or context) keeps the CLI, which knows how to reach it. A unix:// host is asked
// directly whichever CLI KGCI_DOCKER names (dockerd.sh names the newest one it finds). The
// JSON is the same: `docker inspect` prints the API's.

var engineClients sync.Map // socket path -> *http.Client

// engineAPI is the client for d's unix socket, or false when d must use the CLI.
func (d *Docker) engineAPI() (*http.Client, bool) {
	sock, ok := strings.CutPrefix(d.Host, "unix://")
	if !ok || sock == "" {
		return nil, false
	}
	if c, ok := engineClients.Load(sock); ok {
		return c.(*http.Client), true
	}
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}}
	c2, _ := engineClients.LoadOrStore(sock, c)
	return c2.(*http.Client), true
}

// inspectPaths are the API's inspect endpoints, by the CLI's object kind.
var inspectPaths = map[string][2]string{
	"container": {"/containers/", "/json"},
	"image":     {"/images/", "/json"},
	"network":   {"/networks/", ""},
}

// apiInspect GETs the object's inspect document into v; ok is false when the API cannot
// be used for it (the caller runs the CLI instead).
func (d *Docker) apiInspect(ctx context.Context, kind, name string, v any) (ok bool, err error) {
	c, ok := d.engineAPI()
	p, known := inspectPaths[kind]
	// Names and references are path-safe ([a-zA-Z0-9_.-/:@]); anything else goes to the CLI
	// rather than being escaped in a way the engine's router may read differently.
	if !ok || !known || name == "" || strings.ContainsAny(name, "?#% \t\n\\") {
		return false, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+p[0]+name+p[1], nil)
	if err != nil {
		return false, nil
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return true, fmt.Errorf("docker %s inspect %s: %w", kind, name, ctx.Err())
		}
		return true, fmt.Errorf("docker %s inspect %s: %v; is dockerd running (scripts/engines/dockerd.sh start) and DOCKER_HOST set?", kind, name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return true, fmt.Errorf("docker %s inspect %s: %v", kind, name, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			msg = e.Message
		}
		return true, fmt.Errorf("docker %s inspect %s: Error response from daemon: %s", kind, name, msg)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return true, fmt.Errorf("docker %s inspect %s: unexpected answer from the engine: %v", kind, name, err)
	}
	return true, nil
}
