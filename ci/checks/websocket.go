package checks

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

// fetchEnvConfig reads the runtime config the frontend actually serves.
func (e *Env) fetchEnvConfig(ctx context.Context, base string) (map[string]string, *response, error) {
	u := base + "/env-config.js"
	r, err := e.get(ctx, u, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if r.StatusCode != 200 {
		return nil, r, fmt.Errorf("GET %s returned %d", u, r.StatusCode)
	}
	cfg, err := ParseEnvConfig(string(r.Body))
	if err != nil {
		return nil, r, fmt.Errorf("GET %s: cannot read window._env_ (%v): %s", u, err, snippet(r.Body))
	}
	return cfg, r, nil
}

// EventsURL resolves WS_URL the way the frontend does (frontend/src/config.js
// resolveWsEventsUrl): absolute ws(s)/http(s) URLs as they are, a path relative to the page's
// origin, then "/events".
func EventsURL(wsURL, pageURL string) (string, error) {
	page, err := url.Parse(pageURL)
	if err != nil {
		return "", err
	}
	base := wsURL
	if len(base) > 1 {
		base = strings.TrimRight(base, "/")
	}
	secure := page.Scheme == "https"
	scheme := "ws:"
	if secure {
		scheme = "wss:"
	}
	lower := strings.ToLower(base)
	var abs string
	switch {
	case strings.HasPrefix(lower, "ws://") || strings.HasPrefix(lower, "wss://"):
		abs = base
	case strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://"):
		abs = "ws" + base[4:]
	case strings.HasPrefix(base, "//"):
		abs = scheme + base
	default:
		if !strings.HasPrefix(base, "/") {
			base = "/" + base
		}
		abs = scheme + "//" + page.Host + base
	}
	return abs + "/events", nil
}

// handshakeHint explains a non-101 answer by who gave it: nginx's single-page fallback
// (no location routes the path to the backend) or the backend itself (it got a plain GET:
// nginx dropped the Upgrade/Connection headers).
func handshakeHint(resp *http.Response, body []byte) string {
	ct := resp.Header.Get("Content-Type")
	switch {
	case resp.StatusCode == 200 && strings.HasPrefix(ct, "text/html"):
		return "nginx served the app's index.html: no location sends WS_URL + /events to the backend; nginx.prod.conf needs `location /ws/ { proxy_pass http://kidney_backend; ... }`"
	case strings.HasPrefix(ct, "application/json"):
		return fmt.Sprintf("the backend itself answered (%s) as to a plain HTTP GET: nginx forwarded the request without the upgrade; `location /ws/` needs proxy_http_version 1.1, `proxy_set_header Upgrade $http_upgrade` and `proxy_set_header Connection $connection_upgrade`", snippet(body))
	case resp.StatusCode == 502 || resp.StatusCode == 504:
		return "nginx cannot reach the backend (upstream kidney_genetics_backend:8000)"
	}
	return "nginx must proxy `location /ws/` to the backend with proxy_http_version 1.1, `proxy_set_header Upgrade $http_upgrade` and `Connection $connection_upgrade`"
}

var websocketUpgrade = Check{
	Name:    "websocket.upgrade",
	Needs:   []string{dockerstack.Frontend, dockerstack.Backend},
	URL:     dockerstack.Frontend,
	Timeout: 20 * time.Second,
	Run: func(ctx context.Context, e *Env) Outcome {
		cfg, _, err := e.fetchEnvConfig(ctx, e.FrontendURL)
		if err != nil {
			return failf("%v; docker-entrypoint.sh must write window._env_ with WS_URL", err)
		}
		ws, ok := cfg["WS_URL"]
		if !ok || ws == "" {
			return failf("the served env-config.js has no WS_URL (keys: %v)", keys(cfg))
		}
		wsu, err := EventsURL(ws, e.FrontendURL)
		if err != nil {
			return failf("WS_URL %q: %v", ws, err)
		}

		// One handshake: a refused one comes back with its response (and up to 1 KiB of
		// its body) so the check can tell who answered; coder/websocket verifies the
		// Upgrade, Connection and Sec-WebSocket-Accept of an accepted one.
		hc := *e.HTTP()
		hc.Timeout = 0
		c, resp, err := websocket.Dial(ctx, wsu, &websocket.DialOptions{HTTPClient: &hc})
		if err != nil {
			switch {
			case resp == nil:
				return failf("WebSocket handshake to %s (WS_URL=%q) failed: %v", wsu, ws, err)
			case resp.StatusCode != http.StatusSwitchingProtocols:
				body, _ := io.ReadAll(resp.Body)
				return failf("handshake to %s answered %s, want 101 Switching Protocols: %s", wsu, resp.Status, handshakeHint(resp, body)).with(string(body))
			default:
				return failf("handshake to %s answered 101 but %v: a proxy rewrote the handshake", wsu, err)
			}
		}
		defer c.CloseNow()

		// The connection carries messages both ways.
		id := rand.Text()
		msg, _ := json.Marshal(map[string]string{"type": "ping", "id": id})
		if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
			return failf("sending %s over %s: %v", msg, wsu, err)
		}
		var seen []string
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return failf("sent %s over %s but no pong with that id came back (received: %v)", msg, wsu, seen)
				}
				return failf("reading from %s after the ping: %v (received so far: %v)", wsu, err, seen)
			}
			seen = append(seen, snippet(data))
			var m struct{ Type, ID string }
			if json.Unmarshal(data, &m) == nil && m.Type == "pong" && m.ID == id {
				break
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
		return passf("WS_URL %q from the served env-config.js -> %s: 101 with a valid Sec-WebSocket-Accept; ping id %s answered with pong (%d message(s) read)", ws, wsu, id, len(seen))
	},
}

var websocketPlainAPI = Check{
	Name:  "websocket.plain_api_not_upgraded",
	Needs: []string{dockerstack.Frontend, dockerstack.Backend},
	URL:   dockerstack.Frontend,
	Run: func(ctx context.Context, e *Env) Outcome {
		u := e.FrontendURL + "/api/health"
		r, err := e.get(ctx, u, nil)
		if err != nil {
			return failf("GET %s: %v", u, err)
		}
		if r.StatusCode == http.StatusSwitchingProtocols || r.Header.Get("Upgrade") != "" {
			return failf("plain GET %s answered %s with Upgrade %q: an ordinary API request was turned into a protocol upgrade; in nginx.prod.conf, location /api/ must not pass Upgrade/Connection: upgrade", u, r.Status, r.Header.Get("Upgrade"))
		}
		if r.StatusCode != 200 {
			return failf("plain GET %s answered %d, want 200", u, r.StatusCode).with(string(r.Body))
		}
		// A client asking to upgrade an API URL: nginx must strip the headers, so the backend
		// sees a plain request and answers it; passed through, the backend would see a
		// WebSocket handshake for a path with no WebSocket route (403/404).
		hdr := map[string]string{
			"Connection":            "Upgrade",
			"Upgrade":               "websocket",
			"Sec-WebSocket-Version": "13",
			"Sec-WebSocket-Key":     "dGhlIHNhbXBsZSBub25jZQ==", // RFC 6455's sample key: no 101 is wanted anyway
		}
		r2, err := e.get(ctx, u, hdr)
		if err != nil {
			return failf("GET %s with Upgrade headers: %v", u, err)
		}
		if r2.StatusCode == http.StatusSwitchingProtocols {
			return failf("GET %s with Upgrade: websocket was switched to WebSocket (101): nginx passes the client's Upgrade on /api/; set `proxy_set_header Upgrade \"\"` and `proxy_set_header Connection \"\"` there", u)
		}
		if r2.StatusCode != 200 {
			return failf("GET %s with client Upgrade headers answered %d (want 200 as for a plain request): the backend saw a WebSocket handshake, so nginx forwards Upgrade/Connection on /api/; set `proxy_set_header Upgrade \"\"` and `proxy_set_header Connection \"\"` in location /api/", u, r2.StatusCode).with(string(r2.Body))
		}
		return passf("plain GET %s: 200 without Upgrade; with client Upgrade headers still a plain 200 (nginx strips them before the backend)", u)
	},
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
