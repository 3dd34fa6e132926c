package checks

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/imageinspect"
)

type file struct {
	name, body string
	dir        bool
}

func layer(t *testing.T, files ...file) v1.Layer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}
		if f.dir {
			h = &tar.Header{Name: f.name + "/", Mode: 0o755, Typeflag: tar.TypeDir}
		}
		require.NoError(t, tw.WriteHeader(h))
		if !f.dir {
			_, err := tw.Write([]byte(f.body))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	require.NoError(t, err)
	return l
}

// saved writes the image the way `docker save` does and reads it the way the checks do.
func saved(t *testing.T, env []string, layers ...v1.Layer) *imageinspect.Image {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	require.NoError(t, err)
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	cf.Config.Env = env
	img, err = mutate.ConfigFile(img, cf)
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, tarball.Write(name.MustParseReference("test/img:1"), img, &buf))
	ix, err := readSaved(&buf, true)
	require.NoError(t, err)
	// The sizes measured on the way are the image's own.
	ls, err := img.Layers()
	require.NoError(t, err)
	var comp, uncomp int64
	for _, l := range ls {
		rc, err := l.Uncompressed()
		require.NoError(t, err)
		n, err := io.Copy(io.Discard, rc)
		require.NoError(t, err)
		uncomp += n
		c, err := l.Size()
		require.NoError(t, err)
		comp += c
	}
	assert.Equal(t, uncomp, ix.Uncompressed)
	assert.InDelta(t, comp, ix.Compressed, float64(comp)*0.2+200, "gzip of the same tars")
	return ix
}

const pemKey = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----\n"

func TestSecretFindings(t *testing.T) {
	ix := saved(t,
		[]string{"PATH=/usr/bin", "GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D", "DB_PASSWORD=hunter2",
			"DATABASE_URL=postgresql://u:pw@db/x", "EMPTY_TOKEN="},
		layer(t,
			file{name: "app/.env", body: "POSTGRES_PASSWORD=x"},
			file{name: "app/.env.example", body: "POSTGRES_PASSWORD=change-me"},
			file{name: "etc/ssl/certs/ca-certificates.crt", body: "-----BEGIN CERTIFICATE-----\n"},
			file{name: "srv/tls/server.key", body: pemKey},
			file{name: "root/.npmrc", body: "//registry.npmjs.org/:_authToken=npm_abc\n"},
			file{name: "home/u/.npmrc", body: "fund=false\n"},
			file{name: "usr/lib/python3.11/secrets.py", body: "import base64"},
			file{name: "usr/lib/python3.11/getpass.py", body: "def getpass(): pass"},
			file{name: "etc/passwd", body: "root:x:0:0::/root:/bin/sh"},
			// What libssl/libssh2 contain: the markers, not a key.
			file{name: "usr/lib/libssh2.so.1", body: "\x7fELF\x00-----BEGIN RSA PRIVATE KEY-----\x00-----END RSA PRIVATE KEY-----\x00PRIVATE KEY-----"},
			file{name: "app/config/db-password.txt", body: "pw"},
		),
		// Deleting in a later layer does not remove it from the image.
		layer(t, file{name: "app/.wh..env"}, file{name: "srv/tls/.wh.server.key"}),
		layer(t, file{name: "run/secrets/host-ca.crt", body: "x"}),
	)
	f := strings.Join(SecretFindings(ix), "\n")
	assert.Contains(t, f, "/app/.env (layer 0): an .env file")
	assert.NotContains(t, f, ".env.example")
	assert.Contains(t, f, "/srv/tls/server.key (layer 0): contains a PEM private key")
	assert.NotContains(t, f, "ca-certificates")
	assert.Contains(t, f, "/root/.npmrc (layer 0): holds a registry credential")
	assert.NotContains(t, f, "/home/u/.npmrc")
	assert.NotContains(t, f, "secrets.py")
	assert.NotContains(t, f, "getpass")
	assert.NotContains(t, f, "etc/passwd")
	assert.NotContains(t, f, "libssh2")
	assert.Contains(t, f, "/app/config/db-password.txt (layer 0): the name looks like a password/secret file")
	assert.Contains(t, f, "/run/secrets/host-ca.crt (layer 2): a build secret was written into a layer")
	assert.Contains(t, f, "image config Env DB_PASSWORD is set")
	assert.Contains(t, f, "image config Env DATABASE_URL holds a URL with a password")
	assert.NotContains(t, f, "GPG_KEY")
	assert.NotContains(t, f, "EMPTY_TOKEN")
	assert.Len(t, SecretFindings(ix), 7, f)

	clean := saved(t, []string{"PATH=/opt/venv/bin:/usr/bin"}, layer(t, file{name: "app/app/main.py", body: "app = 1"}, file{name: "app/.env.example", body: "X=1"}))
	assert.Empty(t, SecretFindings(clean))
}

func TestBuildToolFindings(t *testing.T) {
	ix := saved(t, nil,
		layer(t,
			file{name: "usr/bin/gcc-12", body: "elf"},
			file{name: "usr/bin/python3.11", body: "elf"},
			file{name: "usr/bin/curl", body: "elf"},
			file{name: "opt/venv/bin/pip", body: "#!"},
			file{name: "opt/venv/bin/uvicorn", body: "#!"},
			file{name: "usr/local/bin/uv", body: "elf"},
			file{name: "usr/lib/python3/dist-packages/pip", dir: true},
			file{name: "usr/lib/python3/dist-packages/pip/__init__.py", body: ""},
			file{name: "usr/share/nginx/html/node_modules/x/index.js", body: ""},
			file{name: "usr/share/doc/gcc-12/copyright", body: ""},
		),
		// Removed again in a later layer: not in the runtime filesystem.
		layer(t, file{name: "usr/bin/.wh.gcc-12"}, file{name: "usr/local/bin/.wh.uv"}),
		layer(t, file{name: "build/bin/npm", body: "#!"}, file{name: "build/node_modules/a/x.js"}),
		// An opaque directory hides everything lower layers put in it.
		layer(t, file{name: "build", dir: true}, file{name: "build/.wh..wh..opq"}, file{name: "build/ok.txt", body: "x"}),
	)
	assert.Contains(t, ix.Files, "/build/ok.txt")
	assert.NotContains(t, ix.Files, "/build/bin/npm")
	f := BuildToolFindings(ix, "backend")
	assert.Equal(t, []string{
		"/opt/venv/bin/pip",
		"/usr/lib/python3/dist-packages/pip/ (pip inside the runtime Python)",
		"/usr/share/nginx/html/node_modules/",
	}, f)
	assert.NotContains(t, BuildToolFindings(ix, "frontend"), "/usr/lib/python3/dist-packages/pip/ (pip inside the runtime Python)")
}
