package checks

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/imageinspect"
)

// secretScan notes what a file's content gives away: the scan sees every
// layer, since a secret removed in a later layer is still in the image.
func secretScan(p string, b []byte) []string {
	var notes []string
	if bytes.Contains(b, []byte("PRIVATE KEY-----")) && pemKeyRE.Match(b) {
		notes = append(notes, noteKey)
	}
	switch path.Base(p) {
	case ".npmrc", ".pypirc", ".yarnrc", ".yarnrc.yml":
		if authTokenRE.Match(b) {
			notes = append(notes, noteCredential)
		}
	}
	return notes
}

const (
	noteKey        = "contains a PEM private key"
	noteCredential = "holds a registry credential"
)

// pemKeyRE matches an actual PEM private key block (header, base64 body, footer), not the
// bare marker strings that TLS/SSH libraries contain.
var pemKeyRE = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n(?:[A-Za-z-]+: [^\n]*\r?\n|\r?\n)*(?:[A-Za-z0-9+/=]{16,}\r?\n)+-----END [A-Z0-9 ]*PRIVATE KEY-----`)

var authTokenRE = regexp.MustCompile(`(?i)(_authToken|_auth|npmAuthToken|password)\s*[=:]\s*\S`)

// readSaved reads an image as `docker save` streams it, for the image checks: every
// layer's entries with secretScan's notes, the final filesystem, and with measure the
// compressed sizes (gzipped in the same pass). go-containerregistry reads a
// docker-archive by opening it again for each part, so the stream goes to a
// temporary file first.
func readSaved(r io.Reader, measure bool) (*imageinspect.Image, error) {
	dir, err := os.MkdirTemp("", "kgci-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "image.tar")
	f, err := os.Create(p)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("saving the image to %s: %w", p, err)
	}
	opt := imageinspect.Options{Files: true, Scan: secretScan}
	if measure {
		opt.Sizes = imageinspect.SizesMeasured
	}
	return imageinspect.ReadFile(p, opt)
}

type imageCache struct {
	mu sync.Mutex
	m  map[string]*imageLoad
}

type imageLoad struct {
	once     sync.Once
	took     time.Duration
	ix       *imageinspect.Image
	measured bool
	source   string // how the image was read, for the checks' messages
	err      error
}

// imageLoad reads the service's image, the exact image under test: the tarball test-e2e
// loaded it from, else streamed out of the engine; the image checks share one pass per
// image. The compressed size is taken in the same pass when size.budgets will need it
// (no matching build.json).
func (e *Env) imageLoad(svc string) *imageLoad {
	ref := e.image(svc)
	e.images.mu.Lock()
	if e.images.m == nil {
		e.images.m = map[string]*imageLoad{}
	}
	l, ok := e.images.m[ref]
	if !ok {
		l = &imageLoad{}
		e.images.m[ref] = l
	}
	e.images.mu.Unlock()
	l.once.Do(func() {
		t0 := time.Now()
		// Not the calling check's context: another check may be waiting for this result.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		measure := false
		tb := e.Tarballs[svc]
		var id string
		if e.BudgetFile != "" || tb != "" {
			img, err := e.Docker().InspectImage(ctx, ref)
			if err != nil {
				l.err = err
				return
			}
			id = img.ID
			_, known := readBuildJSON(e.buildJSON())[img.ID]
			measure = e.BudgetFile != "" && !known
		}
		if tb != "" {
			// test-e2e loaded the image from this file. Reading it in place spares the
			// engine a `docker save` (10.8 s in the Dagger checker's dockerd, beside the
			// stack's start); its layers, hashed against the config's diff IDs as they
			// are read, are the ones the engine holds under that config digest. The
			// blobs are the compressed layers a registry would store.
			opt := imageinspect.Options{Files: true, Scan: secretScan, VerifyDiffIDs: true}
			if measure {
				opt.Sizes = imageinspect.SizesFromBlobs
			}
			l.ix, l.err = imageinspect.ReadFile(tb, opt)
			if l.err == nil && l.ix.ConfigDigest != id {
				l.ix, l.err = nil, fmt.Errorf("%s holds image %s, but the engine's %s is %s: the tarball is not the image under test", tb, l.ix.ConfigDigest, ref, id)
			}
			l.measured, l.source = measure, "read from the tested tarball"
			l.took = time.Since(t0)
			return
		}
		out, wait, err := e.Docker().Stream(ctx, "save", ref)
		if err != nil {
			l.err = err
			return
		}
		l.ix, l.err = readSaved(out, measure)
		l.measured, l.source = measure, "streamed from docker save"
		_, _ = io.Copy(io.Discard, out)
		if werr := wait(); werr != nil && l.err == nil {
			l.err = werr
		}
		l.took = time.Since(t0)
	})
	return l
}

var envFileRE = regexp.MustCompile(`^\.env(\..+)?$`)

// SecretFindings lists files and settings that look like secrets, in any layer.
func SecretFindings(ix *imageinspect.Image) []string {
	var f []string
	for _, layer := range ix.Layers {
		for _, e := range layer.Entries {
			if e.Type != tar.TypeReg && e.Type != tar.TypeSymlink {
				continue
			}
			base := path.Base(e.Path)
			where := fmt.Sprintf("%s (layer %d)", e.Path, e.Layer)
			switch {
			case envFileRE.MatchString(base) && !isEnvTemplate(base):
				f = append(f, where+": an .env file; pass settings at run time (env_file on the host), never in the image, and list .env* in .dockerignore")
			case strings.HasPrefix(e.Path, "/run/secrets/"):
				f = append(f, where+": a build secret was written into a layer; use a secret mount")
			case len(e.Notes) > 0:
				f = append(f, where+": "+strings.Join(e.Notes, ", "))
			case secretNames[base]:
				f = append(f, where+": a credentials file")
			case passwordFileRE.MatchString(base) && !strings.HasPrefix(e.Path, "/usr/share/") && !strings.HasPrefix(e.Path, "/usr/lib/"):
				f = append(f, where+": the name looks like a password/secret file")
			}
		}
	}
	for _, kv := range ix.Config.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case v == "":
		case secretEnvRE.MatchString(k):
			f = append(f, fmt.Sprintf("image config Env %s is set: secrets are passed at run time, not baked into the image", k))
		case strings.Contains(v, "://") && urlPasswordRE.MatchString(v):
			f = append(f, fmt.Sprintf("image config Env %s holds a URL with a password", k))
		}
	}
	sort.Strings(f)
	return f
}

func isEnvTemplate(base string) bool {
	for _, s := range []string{".example", ".sample", ".template", ".dist"} {
		if strings.HasSuffix(base, s) {
			return true
		}
	}
	return false
}

var secretNames = map[string]bool{
	"id_rsa": true, "id_dsa": true, "id_ecdsa": true, "id_ed25519": true,
	".pgpass": true, ".netrc": true, ".git-credentials": true, "credentials.json": true,
	".htpasswd": true, ".dockercfg": true,
}

var (
	passwordFileRE = regexp.MustCompile(`(?i)^(.*[._-])?(passwords?|secrets?|credentials?)([._-].*)?\.(txt|json|ya?ml|env|ini|conf|cfg|key)$|\.(p12|pfx|jks|keystore)$`)
	secretEnvRE    = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|ACCESS_KEY)`)
	urlPasswordRE  = regexp.MustCompile(`://[^/:@\s]+:[^@\s]+@`)
)

// BuildToolFindings lists build tools in the final filesystem of a runtime image.
func BuildToolFindings(ix *imageinspect.Image, svc string) []string {
	tools := map[string]bool{"gcc": true, "cc": true, "g++": true, "c++": true, "make": true, "uv": true, "uvx": true,
		"pip": true, "pip3": true, "node": true, "nodejs": true, "npm": true, "npx": true, "yarn": true}
	var f []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			f = append(f, s)
		}
	}
	for p, e := range ix.Files {
		dir, base := path.Split(p)
		isDir := e.Type == tar.TypeDir
		switch {
		case strings.HasSuffix(dir, "bin/") && !isDir && (tools[base] || strings.HasPrefix(base, "pip3.") || strings.HasPrefix(base, "gcc-")):
			add(p)
		case p == "/var/lib/dpkg/info/build-essential.list":
			add("the build-essential package (" + p + ")")
		case svc == dockerstack.Backend && strings.HasSuffix(dir, "-packages/") && base == "pip" && isDir:
			add(p + "/ (pip inside the runtime Python)")
		}
		if i := strings.Index(p, "/node_modules"); i >= 0 && (len(p) == i+len("/node_modules") || p[i+len("/node_modules")] == '/') {
			add(p[:i+len("/node_modules")] + "/")
		}
	}
	sort.Strings(f)
	return f
}

// firstOf keeps the first n items of a list for a message, saying how many more
// there are (the details keep the whole list).
func firstOf(items []string, n int) []string {
	if len(items) <= n {
		return items
	}
	return append(items[:n:n], fmt.Sprintf("... and %d more", len(items)-n))
}

func imageCheck(name string, find func(*imageinspect.Image, string) []string, what, fix string) Check {
	return Check{
		Name:       name,
		Docker:     true,
		Slow:       true,
		usesImages: true,
		Timeout:    2 * time.Minute,
		Run: func(ctx context.Context, e *Env) Outcome {
			var notes, bad []string
			for _, svc := range []string{dockerstack.Backend, dockerstack.Frontend} {
				l := e.imageLoad(svc)
				ix, err := l.ix, l.err
				if err != nil {
					return failf("could not read the %s image %s: %v", svc, e.image(svc), err)
				}
				found := find(ix, svc)
				n := 0
				for _, l := range ix.Layers {
					n += len(l.Entries)
				}
				notes = append(notes, fmt.Sprintf("%s: %d layers, %d entries, %s and scanned in %.1fs", svc, len(ix.Layers), n, l.source, l.took.Seconds()))
				for _, x := range found {
					bad = append(bad, svc+": "+x)
				}
			}
			if len(bad) > 0 {
				return failf("%s: %s. %s", what, strings.Join(firstOf(bad, 8), "; "), fix).with(strings.Join(bad, "\n"))
			}
			return passf("none found (%s)", strings.Join(notes, "; "))
		},
	}
}

var securityNoSecrets = imageCheck("security.no_secrets", func(ix *imageinspect.Image, _ string) []string { return SecretFindings(ix) },
	"secret-looking content in the image layers",
	"Remove it from the build context (.dockerignore) or the build step; a file deleted in a later layer still ships in the earlier one")

var securityNoBuildTools = imageCheck("security.no_build_tools", BuildToolFindings,
	"build tools in a runtime image",
	"Keep compilers, installers and node_modules in the builder stage; copy only the venv / dist into the runtime stage (ci/spec/images.go). "+
		"pip comes with python:3.11-slim itself: remove it in the runtime stage (pip uninstall -y pip setuptools wheel, or delete /usr/local/bin/pip* and site-packages/pip*)")
