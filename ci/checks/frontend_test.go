package checks

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// gzip.assets judges what it fetches by the policy's gzip_types
// (ci/policy/architecture.yaml frontend_http), not by a list of its own.
func TestGzipAssetsReadsThePolicy(t *testing.T) {
	body := []byte(strings.Repeat("const gene = 'PKD1';\n", 200))
	serve := func(jsType string, gz bool) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.URL.Path == "/":
				w.Header().Set("Content-Type", "text/html")
				_, _ = w.Write([]byte(`<script type="module" crossorigin src="/assets/index-abc.js"></script>`))
				return
			case r.URL.Path == "/assets/index-abc.js":
				w.Header().Set("Content-Type", jsType)
			default:
				w.Header().Set("Content-Type", "application/json")
			}
			if !gz {
				_, _ = w.Write(body)
				return
			}
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			_, _ = zw.Write(body)
			_ = zw.Close()
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Vary", "Accept-Encoding")
			_, _ = w.Write(b.Bytes())
		}))
	}
	for _, c := range []struct {
		name     string
		jsType   string
		gz       bool
		status   Status
		fragment string
	}{
		{"as nginx serves it", "application/javascript", true, Pass, "as frontend_http.gzip_types asks: JS bundle (application/javascript)"},
		{"a type the policy does not list", "application/x-javascript", true, Fail, `served as "application/x-javascript", which is not among the architecture's gzip_types (ci/policy/architecture.yaml frontend_http.gzip_types)`},
		{"not compressed", "text/javascript; charset=utf-8", false, Fail, "text/javascript; charset=utf-8 in gzip_types, as ci/policy/architecture.yaml frontend_http.gzip_types lists it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := serve(c.jsType, c.gz)
			defer srv.Close()
			o := gzipAssets.Run(context.Background(), &Env{FrontendURL: srv.URL})
			assert.Equal(t, c.status, o.Status, o.Message)
			assert.Contains(t, o.Message, c.fragment)
		})
	}
}
