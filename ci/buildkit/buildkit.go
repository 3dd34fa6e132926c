// Package buildkit solves the graphs of ci/llbgraph on a running buildkitd
// and exports the images as tarballs, optionally loading them into Docker.
package buildkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	clog "github.com/containerd/log"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	gateway "github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/tonistiigi/fsutil"
	"golang.org/x/sync/errgroup"

	"github.com/kidney-genetics/kidney-genetics-db/ci/attest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/llbgraph"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// DefaultAddr is where scripts/engines/buildkitd.sh listens.
const DefaultAddr = "unix:///run/kgci/buildkitd.sock"

// DefaultHostCA is the bundle that trusts the TLS-re-signing proxy.
const DefaultHostCA = "/etc/ssl/certs/ca-certificates.crt"

// Addr is BUILDKIT_HOST or DefaultAddr.
func Addr() string {
	if a := os.Getenv("BUILDKIT_HOST"); a != "" {
		return a
	}
	return DefaultAddr
}

// Connect returns a client that has answered once, so a missing daemon is
// reported here rather than in the middle of a build. t is empty for a local
// socket; a remote daemon over TCP wants mutual TLS (docs/remote-builder.md).
func Connect(ctx context.Context, addr string, t TLS) (*client.Client, error) {
	hint := "start it with scripts/engines/buildkitd.sh start or set BUILDKIT_HOST"
	if err := t.Validate(addr); err != nil {
		return nil, err
	}
	c, err := client.New(ctx, addr, t.clientOpts(addr)...)
	if err != nil {
		return nil, fmt.Errorf("cannot reach buildkitd at %s: %w%s; %s", addr, err, tlsHint(addr, t, err), hint)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.ListWorkers(pctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("cannot reach buildkitd at %s: %w%s; %s", addr, err, tlsHint(addr, t, err), hint)
	}
	return c, nil
}

// Options configure a build of the production images.
type Options struct {
	Spec spec.Options
	// RepoRoot is sent as the "source" local (only the paths each image
	// copies, see llbgraph.Source).
	RepoRoot string
	// BaseDir holds the offline OCI layouts (llbgraph.DefaultBaseDir()).
	BaseDir string
	// HostCA is the CA bundle served as the host-ca secret.
	HostCA string
	// OutDir receives <name>.tar (docker format) and, with OCI, <name>.oci.tar.
	OutDir string
	OCI    bool
	// Tag replaces the tag of spec.Image.Tag ("latest" when empty).
	Tag string
	// Sequential builds one image after the other (benchmarking).
	Sequential bool
	// Progress receives BuildKit's progress; ProgressMode is auto, plain,
	// tty, quiet or rawjson.
	Progress     io.Writer
	ProgressMode string
	// Previous are the images an earlier build left in OutDir, by name
	// (build.json). When an image's config digest is unchanged and its
	// tarball is still there, the tarball is kept instead of exported again.
	Previous map[string]Result
	// CacheTo and CacheFrom are remote caches (registry, local, gha) for
	// every image; each image gets its own ref, directory or scope
	// (CacheFor).
	CacheTo, CacheFrom []client.CacheOptionsEntry
	// Provenance, when set (e.g. "mode=max"), has BuildKit write its own SLSA
	// provenance of each image (attest:provenance) to OutDir/<name>.provenance.json.
	// It comes from a separate OCI export: a docker-archive with attestations has
	// no manifest.json, and Docker 20.10 could not load it.
	Provenance string
}

// Result describes one exported image.
type Result struct {
	Name         string        `json:"name"`
	Tag          string        `json:"tag"`
	Profile      string        `json:"profile"`
	Tarball      string        `json:"tarball"`
	OCITarball   string        `json:"oci_tarball,omitempty"`
	Digest       string        `json:"digest"`
	ConfigDigest string        `json:"config_digest"`
	GraphDigest  string        `json:"graph_digest"`
	Duration     time.Duration `json:"duration_ns"`
	Seconds      float64       `json:"seconds"`
	// TarballBytes is the tarball's size, to tell a kept tarball from one
	// that was replaced or cut short since.
	TarballBytes int64 `json:"tarball_bytes,omitempty"`
	// Reused: the image had the config digest of the previous build and its
	// tarball was kept, not exported again.
	Reused bool `json:"reused,omitempty"`
	// Provenance is BuildKit's SLSA provenance statement (Options.Provenance).
	// Its subject is BuildKit's OCI manifest of the image; `kgci publish` points
	// it at the digest it pushes (attest.FromBuildKit).
	Provenance string `json:"provenance,omitempty"`
}

// TagFor is the local tag for img with tag.
func TagFor(img spec.Image, tag string) string {
	if tag == "" {
		tag = "latest"
	}
	repo, _, _ := strings.Cut(img.Tag, ":")
	return repo + ":" + tag
}

// Build builds every image, in parallel unless opt.Sequential, with one
// shared progress display.
func Build(ctx context.Context, c *client.Client, imgs []spec.Image, opt Options) ([]Result, error) {
	if opt.OutDir == "" {
		return nil, errors.New("no output directory given")
	}
	if err := os.MkdirAll(opt.OutDir, 0o755); err != nil {
		return nil, err
	}
	// Check everything that can be checked without the daemon first, so
	// a missing base image does not surface after minutes of the other build.
	prepared := make([]prepared, len(imgs))
	for i, img := range imgs {
		p, err := prepare(img, opt)
		if err != nil {
			return nil, err
		}
		prepared[i] = p
	}

	mode := progressui.DisplayMode(opt.ProgressMode)
	if mode == "" {
		mode = progressui.AutoMode
	}
	out := opt.Progress
	if out == nil {
		out = os.Stderr
	}
	display, err := progressui.NewDisplay(out, mode)
	if err != nil {
		return nil, fmt.Errorf("progress output: %w", err)
	}
	// One display for all solves: statuses are forwarded into merged and it
	// closes once every solve has closed its own channel.
	merged := make(chan *client.SolveStatus)
	var forwarders sync.WaitGroup
	displayDone := make(chan error, 1)
	go func() {
		_, err := display.UpdateFrom(context.WithoutCancel(ctx), merged)
		displayDone <- err
	}()

	results := make([]Result, len(imgs))
	eg, ectx := errgroup.WithContext(ctx)
	if opt.Sequential {
		eg.SetLimit(1)
	}
	for i := range prepared {
		ch := make(chan *client.SolveStatus)
		forwarders.Add(1)
		go func() {
			defer forwarders.Done()
			for s := range ch {
				merged <- s
			}
		}()
		eg.Go(func() error {
			r, err := buildOne(ectx, c, prepared[i], opt, ch)
			if err != nil {
				return fmt.Errorf("building %s: %w%s", prepared[i].img.Name, err, registryHint(opt.Spec.Profile, err))
			}
			results[i] = r
			return nil
		})
	}
	err = eg.Wait()
	forwarders.Wait()
	close(merged)
	if derr := <-displayDone; derr != nil && err == nil {
		err = derr
	}
	return results, err
}

type prepared struct {
	img     spec.Image
	in      llbgraph.Inputs
	stores  map[string]content.Store
	session []session.Attachable
	tag     string
	tarball string
	ociTar  string
	// store holds the blobs of the image's last build (StoreDir).
	store    string
	localDir fsutil.FS
}

func prepare(img spec.Image, opt Options) (prepared, error) {
	p := prepared{img: img, tag: TagFor(img, opt.Tag)}
	if err := img.Validate(); err != nil {
		return p, err
	}
	p.in = llbgraph.Inputs{Profile: opt.Spec.Profile}
	if opt.Spec.Profile == spec.Offline {
		dir := opt.BaseDir
		if dir == "" {
			dir = llbgraph.DefaultBaseDir()
		}
		layouts, err := llbgraph.ReadLayouts(dir, img, llbgraph.DefaultPlatform)
		if err != nil {
			return p, err
		}
		p.in.Layouts = layouts
		p.stores = map[string]content.Store{}
		// containerd's store warns on every open that the filesystem has no
		// fs-verity, which is irrelevant here and drowns the build output.
		_ = clog.SetLevel("error")
		for _, l := range layouts {
			cs, err := local.NewStore(l.Dir)
			if err != nil {
				return p, fmt.Errorf("opening base layout %s: %w", l.Dir, err)
			}
			p.stores[l.StoreID] = cs
		}
	}
	if needsHostCA(img) {
		ca := opt.HostCA
		if ca == "" {
			ca = DefaultHostCA
		}
		if _, err := os.Stat(ca); err != nil {
			return p, fmt.Errorf("image %s needs the host CA bundle as secret %q: %w; pass --host-ca FILE", img.Name, llbgraph.DefaultHostCASecret, err)
		}
		store, err := secretsprovider.NewStore([]secretsprovider.Source{{ID: llbgraph.DefaultHostCASecret, FilePath: ca}})
		if err != nil {
			return p, err
		}
		p.session = append(p.session, secretsprovider.NewSecretProvider(store))
	}
	root := opt.RepoRoot
	if root == "" {
		root = "."
	}
	fs, err := fsutil.NewFS(root)
	if err != nil {
		return p, fmt.Errorf("repository root %s: %w", root, err)
	}
	p.localDir = fs
	p.tarball = filepath.Join(opt.OutDir, img.Name+".tar")
	p.store = StoreDir(opt.OutDir, img.Name)
	if opt.OCI {
		p.ociTar = filepath.Join(opt.OutDir, img.Name+".oci.tar")
	}
	return p, nil
}

func needsHostCA(img spec.Image) bool {
	for _, s := range img.Stages {
		for _, o := range s.Ops {
			if r, ok := o.(spec.Run); ok && r.HostCA {
				return true
			}
		}
	}
	return false
}

func fileOutput(path string) func(map[string]string) (io.WriteCloser, error) {
	return func(map[string]string) (io.WriteCloser, error) {
		return os.Create(path)
	}
}

// unchanged returns the previous result for p when its tarball is still the
// one that build wrote.
func unchanged(p prepared, opt Options) (Result, bool) {
	prev, ok := opt.Previous[p.img.Name]
	if !ok || p.ociTar != "" || prev.ConfigDigest == "" || prev.Tag != p.tag ||
		filepath.Clean(prev.Tarball) != filepath.Clean(p.tarball) {
		return Result{}, false
	}
	st, err := os.Stat(p.tarball)
	if err != nil || st.Size() != prev.TarballBytes {
		return Result{}, false
	}
	if opt.Provenance != "" {
		if _, err := os.Stat(prev.Provenance); prev.Provenance == "" || err != nil {
			return Result{}, false
		}
	}
	return prev, true
}

// solveSharingStatus runs one solve into the build's status channel without
// closing it (c.Build closes the channel it is given): buildOne closes it
// once, after its last solve.
func solveSharingStatus(ctx context.Context, c *client.Client, solveOpt client.SolveOpt, build gateway.BuildFunc, status chan *client.SolveStatus) (*client.SolveResponse, error) {
	ch := make(chan *client.SolveStatus)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s := range ch {
			status <- s
		}
	}()
	resp, err := c.Build(ctx, solveOpt, "kgci", build, ch)
	<-done
	return resp, err
}

// solveOpt is what every solve of p shares: the source, the base layouts,
// the secrets and the caches. Exports are set by each solve.
func solveOpt(p prepared, opt Options) client.SolveOpt {
	return client.SolveOpt{
		LocalMounts: map[string]fsutil.FS{llbgraph.DefaultSourceName: p.localDir},
		OCIStores:   p.stores,
		Session:     p.session,
		// Keeps the daemon's incremental copy of the source between runs.
		SharedKey:    "kidney-genetics-" + p.img.Name,
		CacheExports: CacheFor(opt.CacheTo, p.img.Name),
		CacheImports: CacheFor(opt.CacheFrom, p.img.Name),
		// Not nil: client v0.30 copies the cache imports' frontend attributes
		// into a clone of this map, and a clone of nil is nil (a panic).
		FrontendAttrs: map[string]string{},
	}
}

// buildFunc turns p into its LLB graph inside the gateway (the upstream
// profile resolves base image configs through it) and solves it; the graph's
// digest is written to graphDigest.
func buildFunc(p prepared, cacheImports []client.CacheOptionsEntry, graphDigest *string) gateway.BuildFunc {
	return func(ctx context.Context, gc gateway.Client) (*gateway.Result, error) {
		in := p.in
		if in.Profile == spec.Upstream {
			in.Resolver = gc
		}
		st, err := llbgraph.Build(p.img, in)
		if err != nil {
			return nil, err
		}
		def, err := st.Marshal(ctx, llb.Platform(llbgraph.DefaultPlatform))
		if err != nil {
			return nil, err
		}
		*graphDigest = llbgraph.DefinitionDigest(def).String()
		// A gateway build names its cache imports in each solve request
		// (as the Dockerfile frontend does); SolveOpt.CacheImports alone only
		// reaches frontends that read them.
		res, err := gc.Solve(ctx, gateway.SolveRequest{Definition: def.ToPB(), CacheImports: gatewayCache(cacheImports)})
		if err != nil {
			return nil, err
		}
		cfg, err := llbgraph.ImageConfig(ctx, p.img, st, in)
		if err != nil {
			return nil, err
		}
		res.AddMeta(exptypes.ExporterImageConfigKey, cfg)
		return res, nil
	}
}

// buildOne solves p and exports it into p's blob store (only the blobs the
// store lacks travel from the daemon), then writes p's docker-archive from
// that store, unless the previous build left the same image's tarball.
func buildOne(ctx context.Context, c *client.Client, p prepared, opt Options, status chan *client.SolveStatus) (Result, error) {
	defer close(status)
	start := time.Now()
	store, err := openStore(p.store)
	if err != nil {
		return Result{}, err
	}
	so := solveOpt(p, opt)
	so.Exports = []client.ExportEntry{{
		Type:        client.ExporterDocker,
		Attrs:       map[string]string{"name": p.tag, "tar": "false"},
		OutputStore: store,
	}}
	if p.ociTar != "" {
		so.Exports = append(so.Exports, client.ExportEntry{
			Type:   client.ExporterOCI,
			Attrs:  map[string]string{"name": p.tag},
			Output: fileOutput(p.ociTar + ".partial"),
		})
	}
	var graphDigest string
	build := buildFunc(p, so.CacheImports, &graphDigest)
	resp, err := solveSharingStatus(ctx, c, so, build, status)
	if err != nil {
		if p.ociTar != "" {
			os.Remove(p.ociTar + ".partial")
		}
		return Result{}, err
	}
	if p.ociTar != "" {
		if err := os.Rename(p.ociTar+".partial", p.ociTar); err != nil {
			return Result{}, err
		}
	}
	manifest, names, err := exportedManifest(resp)
	if err != nil {
		return Result{}, err
	}
	// The store keeps this image only: what an earlier build left and
	// this one does not use goes.
	if err := pruneStore(ctx, store, manifest); err != nil {
		return Result{}, fmt.Errorf("pruning %s: %w", p.store, err)
	}
	configDigest := resp.ExporterResponse[exptypes.ExporterImageConfigDigestKey]
	if prev, ok := unchanged(p, opt); ok && configDigest == prev.ConfigDigest {
		d := time.Since(start)
		prev.GraphDigest, prev.Duration, prev.Seconds, prev.Reused = graphDigest, d, d.Round(10*time.Millisecond).Seconds(), true
		return prev, nil
	}
	var provenance string
	if opt.Provenance != "" {
		// Every step is solved by now: this solve only assembles and exports.
		if provenance, err = exportProvenance(ctx, c, so, build, opt.Provenance, p, status); err != nil {
			return Result{}, err
		}
	}
	if err := writeDockerArchive(ctx, store, p.store, manifest, names, p.tarball); err != nil {
		return Result{}, fmt.Errorf("writing %s: %w", p.tarball, err)
	}
	st, err := os.Stat(p.tarball)
	if err != nil {
		return Result{}, err
	}
	d := time.Since(start)
	return Result{
		TarballBytes: st.Size(),
		Name:         p.img.Name,
		Tag:          p.tag,
		Profile:      string(p.in.Profile),
		Tarball:      p.tarball,
		OCITarball:   p.ociTar,
		Digest:       manifest.Digest.String(),
		ConfigDigest: configDigest,
		GraphDigest:  graphDigest,
		Duration:     d,
		Seconds:      d.Round(10 * time.Millisecond).Seconds(),
		Provenance:   provenance,
	}, nil
}

// exportProvenance solves p again (every step is cached by then) with BuildKit's
// provenance attestation and an OCI export to a temporary file, and keeps the
// statement. It shares the build's status channel without closing it.
func exportProvenance(ctx context.Context, c *client.Client, so client.SolveOpt, build gateway.BuildFunc, mode string, p prepared, status chan *client.SolveStatus) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(p.tarball), ".provenance-*.oci.tar")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	so.Exports = []client.ExportEntry{{Type: client.ExporterOCI, Attrs: map[string]string{"name": p.tag}, Output: fileOutput(tmp.Name())}}
	// A cache already exported by the build is not exported again.
	so.CacheExports = nil
	so.FrontendAttrs = maps.Clone(so.FrontendAttrs)
	so.FrontendAttrs["attest:provenance"] = mode
	_, err = solveSharingStatus(ctx, c, so, build, status)
	if err != nil {
		return "", fmt.Errorf("%s: BuildKit provenance (attest:provenance=%s): %w", p.img.Name, mode, err)
	}
	stmt, err := ociAttestation(tmp.Name(), "https://slsa.dev/provenance/")
	if err != nil {
		return "", fmt.Errorf("%s: BuildKit provenance: %w", p.img.Name, err)
	}
	out := strings.TrimSuffix(p.tarball, ".tar") + attest.BuildKitSuffix
	if err := os.WriteFile(out, stmt, 0o644); err != nil {
		return "", err
	}
	return out, nil
}

func gatewayCache(entries []client.CacheOptionsEntry) []gateway.CacheOptionsEntry {
	var out []gateway.CacheOptionsEntry
	for _, e := range entries {
		out = append(out, gateway.CacheOptionsEntry{Type: e.Type, Attrs: e.Attrs})
	}
	return out
}

// registryHint turns the upstream profile's most common failure on a
// machine without registry access (the daemon cannot resolve a public base
// image) into the fix, instead of leaving the user with a DNS error.
func registryHint(p spec.Profile, err error) string {
	if p == spec.Offline {
		return ""
	}
	msg := err.Error()
	for _, s := range []string{"failed to do request", "no such host", "resolve image config", "dial tcp", "i/o timeout"} {
		if strings.Contains(msg, s) {
			return "\nhint: the upstream profile pulls public base images (python:3.11-slim, node:20-alpine, nginx:1.26-alpine, uv); " +
				"this buildkitd cannot reach their registry. Without registry access use --profile offline " +
				"(base images from scripts/make-base-images.sh)"
		}
	}
	return ""
}
