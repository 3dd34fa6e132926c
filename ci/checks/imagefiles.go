package checks

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kidney-genetics/kidney-genetics-db/ci/budget"
	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

// FileEntry is one file in one layer.
type FileEntry struct {
	Layer      int
	Path       string // no leading slash
	Type       byte
	Size       int64
	PrivateKey bool // content holds a PEM private key
	AuthToken  bool // content holds a registry auth token (.npmrc, .pypirc)
}

// ImageFiles indexes every layer of an image, including files that later layers delete:
// a secret removed in a later layer is still in the image.
type ImageFiles struct {
	Ref    string
	Config *v1.ConfigFile
	Layers [][]FileEntry
	// Final is the filesystem a container sees (whiteouts applied), by absolute path.
	// (ci/imageinspect computes the same, but it also digests every layer, which for the
	// uncompressed layers of `docker save` means gzipping them: seconds per image.)
	Final map[string]FileEntry
	// Sizes are measured only on request (IndexArchive's measure).
	Sizes *budget.Actual
}

// scanLimit: files larger than this are not read for key material (keys are small).
const scanLimit = 1 << 20

// IndexImage reads a docker-archive tarball file (as written by `docker save -o`).
func IndexImage(tarPath, ref string, measure bool) (*ImageFiles, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return IndexArchive(f, ref, measure)
}

// IndexArchive reads a docker-archive stream (the output of `docker save`) in one pass, so
// the image never has to be written to disk: every layer tar inside is indexed as it
// streams by, while manifest.json and the config (small entries) are kept to put the
// layers in order at the end. With measure, each layer is also gzipped (BestSpeed, which
// lands within 1% of the blobs BuildKit writes) to learn its compressed size.
func IndexArchive(r io.Reader, ref string, measure bool) (*ImageFiles, error) {
	layers := map[string]scanned{}
	small := map[string][]byte{}
	outer := tar.NewReader(r)
	br := bufio.NewReaderSize(nil, 64<<10)
	for {
		h, err := outer.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: reading the docker save stream: %w", ref, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(h.Name)
		br.Reset(outer)
		head, _ := br.Peek(512)
		switch {
		case isTar(head):
			li, err := scanLayer(br, measure)
			if err != nil {
				return nil, fmt.Errorf("%s: layer %s: %w", ref, name, err)
			}
			li.uncompressed = h.Size
			layers[name] = li
		case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
			// Engines that save OCI layouts may keep layer blobs compressed.
			zr, err := gzip.NewReader(br)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", ref, name, err)
			}
			cr := &countReader{r: zr}
			li, err := scanLayer(cr, measure)
			if err != nil {
				return nil, fmt.Errorf("%s: layer %s: %w", ref, name, err)
			}
			li.uncompressed = cr.n
			layers[name] = li
		case h.Size <= 4<<20:
			b, err := io.ReadAll(br)
			if err != nil {
				return nil, err
			}
			small[name] = b
		}
	}
	var manifest []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(small["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		return nil, fmt.Errorf("%s: the archive's manifest.json does not describe exactly one image (%v)", ref, err)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(small[path.Clean(manifest[0].Config)]))
	if err != nil {
		return nil, fmt.Errorf("%s: image config %s: %w", ref, manifest[0].Config, err)
	}
	ix := &ImageFiles{Ref: ref, Config: cf, Final: map[string]FileEntry{}}
	if measure {
		ix.Sizes = &budget.Actual{}
	}
	for i, name := range manifest[0].Layers {
		li, ok := layers[path.Clean(name)]
		if !ok {
			return nil, fmt.Errorf("%s: layer %s named in manifest.json is not in the archive", ref, name)
		}
		// The same layer may appear twice in one image; each use gets its own index.
		entries := append([]FileEntry(nil), li.entries...)
		for j := range entries {
			entries[j].Layer = i
		}
		ix.Layers = append(ix.Layers, entries)
		applyLayer(ix.Final, entries)
		if measure {
			ix.Sizes.Compressed += li.compressed
			ix.Sizes.Uncompressed += li.uncompressed
		}
	}
	return ix, nil
}

type scanned struct {
	entries      []FileEntry
	compressed   int64
	uncompressed int64
}

// scanLayer indexes one layer tar; with measure it also gzips the stream on the way.
func scanLayer(r io.Reader, measure bool) (scanned, error) {
	var out scanned
	var zw *gzip.Writer
	cw := &countWriter{}
	if measure {
		zw, _ = gzip.NewWriterLevel(cw, gzip.BestSpeed)
		r = io.TeeReader(r, zw)
	}
	entries, err := indexLayer(r, -1)
	if err != nil {
		return out, err
	}
	// The rest of the stream (end-of-archive blocks, padding) belongs to the layer too.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return out, err
	}
	out.entries = entries
	if zw != nil {
		if err := zw.Close(); err != nil {
			return out, err
		}
		out.compressed = cw.n
	}
	return out, nil
}

func isTar(head []byte) bool {
	return len(head) >= 262 && string(head[257:262]) == "ustar"
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func indexLayer(r io.Reader, li int) ([]FileEntry, error) {
	tr := tar.NewReader(r)
	var out []FileEntry
	buf := make([]byte, scanLimit)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		p := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		fe := FileEntry{Layer: li, Path: p, Type: h.Typeflag, Size: h.Size}
		if h.Typeflag == tar.TypeReg && h.Size > 0 && h.Size <= scanLimit {
			n, err := io.ReadFull(tr, buf[:h.Size])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			b := buf[:n]
			fe.PrivateKey = bytes.Contains(b, []byte("PRIVATE KEY-----")) && pemKeyRE.Match(b)
			base := path.Base(p)
			if base == ".npmrc" || base == ".pypirc" || base == ".yarnrc" || base == ".yarnrc.yml" {
				fe.AuthToken = authTokenRE.Match(b)
			}
		}
		out = append(out, fe)
	}
}

// pemKeyRE matches an actual PEM private key block (header, base64 body, footer), not the
// bare marker strings that TLS/SSH libraries contain.
var pemKeyRE = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n(?:[A-Za-z-]+: [^\n]*\r?\n|\r?\n)*(?:[A-Za-z0-9+/=]{16,}\r?\n)+-----END [A-Z0-9 ]*PRIVATE KEY-----`)

var authTokenRE = regexp.MustCompile(`(?i)(_authToken|_auth|npmAuthToken|password)\s*[=:]\s*\S`)

// applyLayer applies one layer (OCI whiteouts included) to a filesystem view keyed by
// absolute path.
func applyLayer(fs map[string]FileEntry, entries []FileEntry) {
	removeTree := func(p string, keepSelf bool) {
		for k := range fs {
			if strings.HasPrefix(k, p+"/") || (!keepSelf && k == p) {
				delete(fs, k)
			}
		}
	}
	for _, e := range entries {
		dir, base := path.Split("/" + e.Path)
		dir = path.Clean(dir)
		switch {
		case base == ".wh..wh..opq":
			removeTree(strings.TrimSuffix(dir, "/"), true)
		case strings.HasPrefix(base, ".wh."):
			removeTree(path.Join(dir, strings.TrimPrefix(base, ".wh.")), false)
		}
	}
	for _, e := range entries {
		if strings.HasPrefix(path.Base(e.Path), ".wh.") || e.Path == "" || e.Path == "." {
			continue
		}
		p := "/" + e.Path
		if e.Type != tar.TypeDir {
			// A file replaces whatever tree an earlier layer had at that path.
			removeTree(p, true)
		}
		fs[p] = e
	}
}

type imageCache struct {
	mu sync.Mutex
	m  map[string]*imageLoad
}

type imageLoad struct {
	once sync.Once
	took time.Duration
	ix   *ImageFiles
	err  error
}

// Close releases what the checks hold (nothing on disk: images are streamed).
func (e *Env) Close() error { return nil }

// imageLoad streams the service's image out of the engine (the exact image under test)
// and indexes it; the image checks share one pass per image. The compressed size is
// computed in the same pass when size.budgets will need it (no matching build.json).
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
		if e.BudgetFile != "" {
			img, err := e.Docker().InspectImage(ctx, ref)
			if err != nil {
				l.err = err
				return
			}
			_, known := readBuildJSON(e.buildJSON())[img.ID]
			measure = !known
		}
		out, wait, err := e.Docker().Stream(ctx, "save", ref)
		if err != nil {
			l.err = err
			return
		}
		l.ix, l.err = IndexArchive(out, ref, measure)
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
func SecretFindings(ix *ImageFiles) []string {
	var f []string
	for _, layer := range ix.Layers {
		for _, e := range layer {
			if e.Type != tar.TypeReg && e.Type != tar.TypeSymlink {
				continue
			}
			base := path.Base(e.Path)
			where := fmt.Sprintf("/%s (layer %d)", e.Path, e.Layer)
			switch {
			case envFileRE.MatchString(base) && !isEnvTemplate(base):
				f = append(f, where+": an .env file; pass settings at run time (env_file on the host), never in the image, and list .env* in .dockerignore")
			case strings.HasPrefix(e.Path, "run/secrets/"):
				f = append(f, where+": a build secret was written into a layer; use a secret mount")
			case e.PrivateKey:
				f = append(f, where+": contains a PEM private key")
			case e.AuthToken:
				f = append(f, where+": holds a registry credential")
			case secretNames[base]:
				f = append(f, where+": a credentials file")
			case passwordFileRE.MatchString(base) && !strings.HasPrefix(e.Path, "usr/share/") && !strings.HasPrefix(e.Path, "usr/lib/"):
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
func BuildToolFindings(ix *ImageFiles, svc string) []string {
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
	for p, e := range ix.Final {
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

func imageCheck(name string, find func(*ImageFiles, string) []string, what, fix string) Check {
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
					n += len(l)
				}
				notes = append(notes, fmt.Sprintf("%s: %d layers, %d entries, streamed from docker save and scanned in %.1fs", svc, len(ix.Layers), n, l.took.Seconds()))
				for _, x := range found {
					bad = append(bad, svc+": "+x)
				}
			}
			if len(bad) > 0 {
				shown := bad
				if len(shown) > 8 {
					shown = append(shown[:8:8], fmt.Sprintf("... and %d more", len(bad)-8))
				}
				return failf("%s: %s. %s", what, strings.Join(shown, "; "), fix).with(strings.Join(bad, "\n"))
			}
			return passf("none found (%s)", strings.Join(notes, "; "))
		},
	}
}

var securityNoSecrets = imageCheck("security.no_secrets", func(ix *ImageFiles, _ string) []string { return SecretFindings(ix) },
	"secret-looking content in the image layers",
	"Remove it from the build context (.dockerignore) or the build step; a file deleted in a later layer still ships in the earlier one")

var securityNoBuildTools = imageCheck("security.no_build_tools", BuildToolFindings,
	"build tools in a runtime image",
	"Keep compilers, installers and node_modules in the builder stage; copy only the venv / dist into the runtime stage (ci/spec/images.go). "+
		"pip comes with python:3.11-slim itself: remove it in the runtime stage (pip uninstall -y pip setuptools wheel, or delete /usr/local/bin/pip* and site-packages/pip*)")
