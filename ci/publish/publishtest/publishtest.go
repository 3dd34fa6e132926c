// Package publishtest gives tests a real OCI registry and image tarballs in
// the format `kgci build` writes, so pushes are exercised end to end.
package publishtest

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// RevisionLabel mirrors publish.RevisionLabel (importing it would make a
// cycle for publish's own tests).
const RevisionLabel = "org.opencontainers.image.revision"

// WriteArchives writes <name>.tar for each name in docker-archive format
// (what `docker save` and `kgci build` produce), with a config carrying the
// revision label, and returns the images for comparison.
func WriteArchives(t testing.TB, dir, revision string, names ...string) map[string]v1.Image {
	t.Helper()
	out := map[string]v1.Image{}
	for i, n := range names {
		base, err := random.Image(512, int64(2+i))
		if err != nil {
			t.Fatal(err)
		}
		cf, err := base.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.Config.User = "1000:1000"
		cf.Config.Cmd = []string{"run-" + n}
		cf.Config.Labels = map[string]string{RevisionLabel: revision, "org.opencontainers.image.title": "kidney_genetics_" + n}
		img, err := mutate.ConfigFile(base, cf)
		if err != nil {
			t.Fatal(err)
		}
		tag, err := name.NewTag("kidney_genetics_" + n + ":latest")
		if err != nil {
			t.Fatal(err)
		}
		if err := tarball.WriteToFile(filepath.Join(dir, n+".tar"), tag, img); err != nil {
			t.Fatal(err)
		}
		out[n] = img
	}
	return out
}

// StartRegistry serves an in-memory registry over plain HTTP on a free
// loopback port and returns its host:port and a request counter. With a
// user, every request needs those basic credentials, as on ghcr.io.
func StartRegistry(t testing.TB, user, pass string) (host string, requests *atomic.Int64) {
	t.Helper()
	return StartRegistryOn(t, "127.0.0.1:0", user, pass)
}

// StartRegistryOn is StartRegistry listening on addr (e.g. a bridge's gateway, so that
// containers reach it).
func StartRegistryOn(t testing.TB, addr, user, pass string) (host string, requests *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("registry: listen on %s: %v", addr, err)
	}
	requests = &atomic.Int64{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), requests
}
