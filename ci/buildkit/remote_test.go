package buildkit

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/moby/buildkit/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCacheForGivesEachImageItsOwnPlace(t *testing.T) {
	in, err := ParseCache(true, []string{
		"type=registry,ref=127.0.0.1:5000/kg/cache,mode=max,registry.insecure=true",
		"type=registry,ref=ghcr.io/org/kg:buildcache",
		"type=local,dest=/tmp/cache/",
	})
	require.NoError(t, err)
	got := CacheFor(in, "backend")
	require.Len(t, got, 3)
	assert.Equal(t, "127.0.0.1:5000/kg/cache:backend", got[0].Attrs["ref"], "a port's colon is not a tag")
	assert.Equal(t, "max", got[0].Attrs["mode"])
	assert.Equal(t, "true", got[0].Attrs["registry.insecure"])
	assert.Equal(t, "ghcr.io/org/kg:buildcache-backend", got[1].Attrs["ref"])
	assert.Equal(t, "min", got[1].Attrs["mode"], "buildctl's default mode")
	assert.Equal(t, "/tmp/cache/backend", got[2].Attrs["dest"])
	// The caller's entries are not changed: the frontend gets its own copy.
	assert.Equal(t, "127.0.0.1:5000/kg/cache", in[0].Attrs["ref"])
	assert.Equal(t, "127.0.0.1:5000/kg/cache:frontend", CacheFor(in, "frontend")[0].Attrs["ref"])

	t.Setenv("ACTIONS_CACHE_URL", "https://cache.example/")
	t.Setenv("ACTIONS_RUNTIME_TOKEN", "token")
	imp, err := ParseCache(false, []string{"type=local,src=/c", "type=gha,scope=pr"})
	require.NoError(t, err)
	got = CacheFor(imp, "frontend")
	assert.Equal(t, "/c/frontend", got[0].Attrs["src"])
	assert.Equal(t, "pr-frontend", got[1].Attrs["scope"])
	assert.Equal(t, "kidney-genetics-backend", CacheFor([]client.CacheOptionsEntry{{Type: "gha", Attrs: map[string]string{}}}, "backend")[0].Attrs["scope"])
}

func TestParseCacheErrors(t *testing.T) {
	_, err := ParseCache(true, []string{"ghcr.io/org/kg:cache"})
	assert.ErrorContains(t, err, "give the type, e.g. type=registry,ref=")
	_, err = ParseCache(true, []string{"type=local"})
	assert.ErrorContains(t, err, "dest")
	_, err = ParseCache(false, []string{"type=local"})
	assert.ErrorContains(t, err, "src")
	_, err = ParseCache(true, []string{"type=registry,mode=max"})
	assert.ErrorContains(t, err, "needs ref=")
	for _, k := range []string{"ACTIONS_CACHE_URL", "ACTIONS_RESULTS_URL", "ACTIONS_RUNTIME_TOKEN"} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
	_, err = ParseCache(false, []string{"type=gha"})
	assert.ErrorContains(t, err, "crazy-max/ghaction-github-runtime")
}

func TestTLSValidate(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(ca, []byte("x"), 0o600))
	assert.NoError(t, TLS{}.Validate("unix:///run/kgci/buildkitd.sock"))
	assert.NoError(t, TLS{CACert: ca}.Validate("tcp://builder:1234"))
	assert.ErrorContains(t, TLS{CACert: ca, Cert: ca}.Validate("tcp://builder:1234"), "--tlscert and --tlskey go together")
	assert.ErrorContains(t, TLS{CACert: filepath.Join(dir, "none.pem")}.Validate("tcp://b:1"), "--tlscacert: ")
	assert.ErrorContains(t, TLS{CACert: ca}.Validate("unix:///x.sock"), "not tcp://HOST:PORT")
}

func TestTLSHint(t *testing.T) {
	assert.Contains(t, tlsHint("tcp://b:1", TLS{}, errors.New("connection reset by peer")), "may require TLS")
	assert.Contains(t, tlsHint("tcp://b:1", TLS{CACert: "ca"}, errors.New("remote error: tls: certificate required")), "pass --tlscert and --tlskey")
	assert.Contains(t, tlsHint("tcp://b:1", TLS{CACert: "ca"}, errors.New("x509: certificate signed by unknown authority")), "--tlscacert")
	assert.Contains(t, tlsHint("tcp://b:1", TLS{CACert: "ca"}, errors.New("write tcp 127.0.0.1:40402->127.0.0.1:39867: write: broken pipe")), "pass --tlscert and --tlskey")
	assert.Empty(t, tlsHint("tcp://b:1", TLS{CACert: "ca", Cert: "c", Key: "k"}, errors.New("broken pipe")))
	assert.Empty(t, tlsHint("unix:///s", TLS{}, errors.New("no such file or directory")))
}

func TestUnchangedNeedsTheSameTarball(t *testing.T) {
	dir := t.TempDir()
	tar := filepath.Join(dir, "frontend.tar")
	require.NoError(t, os.WriteFile(tar, []byte("0123456789"), 0o644))
	p := prepared{tag: "kidney_genetics_frontend:latest", tarball: tar}
	p.img.Name = "frontend"
	prev := Result{Name: "frontend", Tag: p.tag, Tarball: tar, ConfigDigest: "sha256:aa", TarballBytes: 10}
	opt := Options{Previous: map[string]Result{"frontend": prev}}
	_, ok := unchanged(p, opt)
	assert.True(t, ok)
	for name, mut := range map[string]func(*Result){
		"another tag":         func(r *Result) { r.Tag = "kidney_genetics_frontend:v1" },
		"another place":       func(r *Result) { r.Tarball = filepath.Join(dir, "x.tar") },
		"a cut-short tarball": func(r *Result) { r.TarballBytes = 11 },
		"no digest":           func(r *Result) { r.ConfigDigest = "" },
	} {
		r := prev
		mut(&r)
		_, ok := unchanged(p, Options{Previous: map[string]Result{"frontend": r}})
		assert.False(t, ok, name)
	}
	p.ociTar = filepath.Join(dir, "frontend.oci.tar")
	_, ok = unchanged(p, opt)
	assert.False(t, ok, "an OCI archive is asked for: export")
}
