package checks

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
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

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// AcceptKey is RFC 6455's Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func AcceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// rawHandshake performs the opening handshake by hand, so the check sees exactly what
// nginx sends back (status, Upgrade, Connection, Sec-WebSocket-Accept). For a non-101
// answer the body is read (up to 4 KiB) so the check can tell who answered.
func (e *Env) rawHandshake(ctx context.Context, wsu string) (*http.Response, []byte, string, error) {
	u, err := url.Parse(wsu)
	if err != nil {
		return nil, nil, "", err
	}
	if u.Scheme != "ws" {
		return nil, nil, "", fmt.Errorf("raw handshake supports ws:// only, got %s", wsu)
	}
	host := u.Host
	if u.Port() == "" {
		host += ":80"
	}
	conn, err := e.dial(ctx, "tcp", host)
	if err != nil {
		return nil, nil, "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	k := make([]byte, 16)
	_, _ = rand.Read(k)
	key := base64.StdEncoding.EncodeToString(k)
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\n" +
		"Host: " + u.Host + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return nil, nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet})
	if err != nil {
		return nil, nil, "", fmt.Errorf("reading the handshake response: %w", err)
	}
	var body []byte
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 4096))
	}
	resp.Body.Close()
	return resp, body, key, nil
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

		// 1. By hand: exactly what nginx answers.
		resp, body, key, err := e.rawHandshake(ctx, wsu)
		if err != nil {
			return failf("WebSocket handshake to %s (WS_URL=%q) failed: %v", wsu, ws, err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			return failf("handshake to %s answered %s, want 101 Switching Protocols: %s", wsu, resp.Status, handshakeHint(resp, body)).with(string(body))
		}
		if got, want := resp.Header.Get("Sec-WebSocket-Accept"), AcceptKey(key); got != want {
			return failf("handshake to %s: Sec-WebSocket-Accept %q, want %q (RFC 6455): a proxy rewrote the handshake", wsu, got, want)
		}
		if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || !strings.Contains(strings.ToLower(resp.Header.Get("Connection")), "upgrade") {
			return failf("handshake to %s: Upgrade %q, Connection %q; want websocket / upgrade", wsu, resp.Header.Get("Upgrade"), resp.Header.Get("Connection"))
		}

		// 2. With a real client: the connection carries messages both ways.
		hc := *e.HTTP()
		hc.Timeout = 0
		c, dresp, err := websocket.Dial(ctx, wsu, &websocket.DialOptions{HTTPClient: &hc})
		if err != nil {
			return failf("coder/websocket could not connect to %s: %v", wsu, err)
		}
		defer c.CloseNow()
		if dresp.StatusCode != http.StatusSwitchingProtocols {
			return failf("coder/websocket handshake status %d", dresp.StatusCode)
		}
		id := randomID()
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
			"Sec-WebSocket-Key":     base64.StdEncoding.EncodeToString([]byte(randomID()[:16])),
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
