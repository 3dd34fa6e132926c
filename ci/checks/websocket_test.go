package checks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
)

// frontendFake serves env-config.js with WS_URL=/ws and answers /ws/events with events.
func frontendFake(t *testing.T, events http.HandlerFunc) *Env {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/env-config.js":
			w.Write([]byte(`window._env_ = { API_BASE_URL: "/api", WS_URL: "/ws" };`))
		case "/ws/events":
			events(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return &Env{Runtime: "docker", FrontendURL: srv.URL}
}

// pongServer is the backend's /ws/events: it answers a ping with a pong of the same id,
// after an unrelated event, as the real one may.
func pongServer(t *testing.T, reply bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.CloseNow()
		_, data, err := c.Read(r.Context())
		if err != nil {
			return
		}
		var m struct{ Type, ID string }
		if json.Unmarshal(data, &m) != nil || m.Type != "ping" || !reply {
			c.Read(r.Context()) // silent until the client goes away
			return
		}
		c.Write(r.Context(), websocket.MessageText, []byte(`{"type":"gene_updated","id":"other"}`))
		pong, _ := json.Marshal(map[string]string{"type": "pong", "id": m.ID})
		c.Write(r.Context(), websocket.MessageText, pong)
		c.Read(r.Context())
	}
}

// TestWebsocketUpgradeAgainstFakes: each wrong answer to the handshake is named by who gave
// it, and a working endpoint passes only when the pong carries the ping's id.
func TestWebsocketUpgradeAgainstFakes(t *testing.T) {
	ctx := context.Background()
	o := websocketUpgrade.Run(ctx, frontendFake(t, pongServer(t, true)))
	assert.Equal(t, Pass, o.Status, o.Message)
	assert.Contains(t, o.Message, "answered with pong (2 message(s) read)")

	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	o = websocketUpgrade.Run(short, frontendFake(t, pongServer(t, false)))
	assert.Equal(t, Fail, o.Status)
	assert.Contains(t, o.Message, "no pong with that id came back")

	for name, c := range map[string]struct {
		events http.HandlerFunc
		want   []string
	}{
		"spa fallback": {func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<!doctype html><div id=app></div>"))
		}, []string{"answered 200 OK, want 101 Switching Protocols", "nginx served the app's index.html", "location /ws/"}},
		"backend without upgrade": {func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			w.Write([]byte(`{"detail":"Not Found"}`))
		}, []string{"answered 404 Not Found", `the backend itself answered ({"detail":"Not Found"})`, "proxy_set_header Upgrade $http_upgrade"}},
		"bad gateway": {func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(502)
		}, []string{"answered 502 Bad Gateway", "nginx cannot reach the backend"}},
		"rewritten accept": {func(w http.ResponseWriter, r *http.Request) {
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			// RFC 6455's sample answer: right for its sample key, wrong for any other.
			buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
			buf.Flush()
		}, []string{"answered 101 but", "Sec-WebSocket-Accept", "a proxy rewrote the handshake"}},
	} {
		t.Run(name, func(t *testing.T) {
			o := websocketUpgrade.Run(ctx, frontendFake(t, c.events))
			assert.Equal(t, Fail, o.Status)
			for _, w := range c.want {
				assert.Contains(t, o.Message, w)
			}
		})
	}
}
