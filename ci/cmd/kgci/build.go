package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/budget"
	"github.com/kidney-genetics/kidney-genetics-db/ci/buildkit"
	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/imageinspect"
	"github.com/kidney-genetics/kidney-genetics-db/ci/llbgraph"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

const buildSummary = "Build the backend and frontend images with BuildKit, export tarballs, check size budgets"

func init() {
	register(command{
		name:    "build",
		summary: buildSummary,
		run: func(ctx context.Context, args []string) error {
			return runBuild(ctx, args, os.Stdout, os.Stderr)
		},
	})
}

// buildReport is results/build.json.
type buildReport struct {
	Profile      string           `json:"profile"`
	Revision     string           `json:"revision"`
	Created      string           `json:"created"`
	BuildkitHost string           `json:"buildkit_host"`
	Sequential   bool             `json:"sequential"`
	Started      time.Time        `json:"started"`
	WallSeconds  float64          `json:"wall_seconds"`
	Images       []builtImage     `json:"images"`
	Budgets      string           `json:"budgets_file,omitempty"`
	Verdicts     []budget.Verdict `json:"budget_verdicts,omitempty"`
	BudgetPass   *bool            `json:"budget_pass,omitempty"`
	Loaded       []string         `json:"loaded_into_docker,omitempty"`
}

type builtImage struct {
	buildkit.Result
	Compressed   int64  `json:"compressed_bytes"`
	Uncompressed int64  `json:"uncompressed_bytes"`
	Layers       int    `json:"layers"`
	User         string `json:"user"`
	// LayerSizes lets the next build skip decompressing the layers it
	// shares with this one (a one-line change rebuilds one layer).
	LayerSizes []layerSize `json:"layer_sizes,omitempty"`
}

type layerSize struct {
	DiffID       string `json:"diff_id"`
	Uncompressed int64  `json:"uncompressed_bytes"`
}

// progress receives BuildKit's progress display (os.Stderr from the command line).
func runBuild(ctx context.Context, args []string, stdout, progress io.Writer) error {
	fs := newFlags("build", buildSummary+`.

Builds both images from the description in ci/spec (in parallel unless
--sequential), writes OUT/backend.tar and OUT/frontend.tar (docker-archive,
tagged kidney_genetics_<name>:TAG), measures them, compares them with the
size budgets and writes build.json and sizes.md next to OUT. Exits non-zero
when a budget is exceeded (after writing the reports).

A rebuild into the same OUT is incremental: buildkitd sends only the blobs
that OUT/.blobs/<name> (the image's last build) lacks, and an image whose
config digest did not change keeps its tarball.

The offline profile needs the base image layouts made by
scripts/make-base-images.sh; both profiles need a buildkitd
(scripts/engines/buildkitd.sh start).`)
	profile := fs.String("profile", "upstream", "offline (local Debian-made bases, no registry) or upstream (public images, uv)")
	out := fs.String("out", "results/images", "directory for the image tarballs")
	report := fs.String("report", "", "build.json path (default: OUT/../build.json)")
	load := fs.Bool("load", false, "docker load the images into the engine at --docker-host")
	tag := fs.String("tag", "latest", "tag for kidney_genetics_backend and kidney_genetics_frontend")
	budgets := fs.String("budgets", "budgets.yaml", "size budgets file; 'none' skips the check")
	sequential := fs.Bool("sequential", false, "build one image after the other (benchmarks)")
	host := fs.String("buildkit-host", buildkit.Addr(), "buildkitd address; $BUILDKIT_HOST when set")
	dockerHost := fs.String("docker-host", os.Getenv("DOCKER_HOST"), "Docker engine for --load (default $DOCKER_HOST)")
	baseCache := fs.String("base-cache", llbgraph.DefaultBaseDir(), "directory holding the offline base layouts (python, node, nginx) from scripts/make-base-images.sh")
	hostCA := fs.String("host-ca", buildkit.DefaultHostCA, "CA bundle given to npm ci as a build secret (offline profile)")
	oci := fs.Bool("oci", false, "also write OUT/<name>.oci.tar (OCI archive)")
	provenance := fs.String("provenance", "", "have BuildKit write its own SLSA provenance of each image to OUT/<name>.provenance.json: mode=min or mode=max (kgci publish attaches it to the pushed digest; costs one more OCI export per changed image)")
	images := fs.String("images", "backend,frontend", "comma-separated images to build")
	progressMode := fs.String("progress", "auto", "BuildKit progress output: auto, plain, tty, quiet or rawjson")
	revision := fs.String("revision", "", "revision label (default: git rev-parse HEAD)")
	created := fs.String("created", "", "creation time label, RFC 3339 (default: the commit time of HEAD, so rebuilds are identical)")
	repo := fs.String("repo", ".", "repository root (the build context)")
	var cacheTo, cacheFrom multiFlag
	fs.Var(&cacheTo, "cache-to", "export the build cache, buildctl syntax; repeatable. type=registry,ref=HOST/REPO[:TAG][,mode=max][,registry.insecure=true] | type=local,dest=DIR | type=gha[,scope=S] (GitHub Actions; needs ACTIONS_CACHE_URL and ACTIONS_RUNTIME_TOKEN). Each image gets its own tag, subdirectory or scope")
	fs.Var(&cacheFrom, "cache-from", "import a build cache written by --cache-to (type=registry,ref=... | type=local,src=DIR | type=gha); repeatable")
	var tls buildkit.TLS
	fs.StringVar(&tls.CACert, "tlscacert", "", "CA certificate that signed a remote buildkitd's certificate (tcp:// addresses)")
	fs.StringVar(&tls.Cert, "tlscert", "", "client certificate for a buildkitd that requires mutual TLS")
	fs.StringVar(&tls.Key, "tlskey", "", "key of --tlscert")
	fs.StringVar(&tls.ServerName, "tlsservername", "", "name to verify in the daemon's certificate (default: the host of --buildkit-host)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	p, err := spec.ParseProfile(*profile)
	if err != nil {
		return err
	}
	rev, ts := *revision, *created
	if rev == "" {
		rev = buildGit(ctx, *repo, "rev-parse", "HEAD")
	}
	if ts == "" {
		ts = buildGit(ctx, *repo, "log", "-1", "--format=%cI")
	}
	opts := spec.Options{Profile: p, Revision: rev, Created: ts}
	if err := opts.Validate(); err != nil {
		return err
	}
	var imgs []spec.Image
	for _, n := range strings.Split(*images, ",") {
		img, err := spec.ByName(opts, strings.TrimSpace(n))
		if err != nil {
			return err
		}
		imgs = append(imgs, img)
	}
	// BuildKit's own syntax (attest:provenance): mode=min|max, optionally with more
	// comma-separated attributes; checked here, before any daemon is contacted.
	if *provenance != "" && !strings.HasPrefix(*provenance, "mode=min") && !strings.HasPrefix(*provenance, "mode=max") {
		return fmt.Errorf("--provenance %q: want mode=min or mode=max (BuildKit's attest:provenance attributes)", *provenance)
	}
	cacheExports, err := buildkit.ParseCache(true, cacheTo)
	if err != nil {
		return fmt.Errorf("--cache-to: %w", err)
	}
	cacheImports, err := buildkit.ParseCache(false, cacheFrom)
	if err != nil {
		return fmt.Errorf("--cache-from: %w", err)
	}
	var bud *budget.Budgets
	if *budgets != "none" {
		// Read before building: a malformed file should not cost a build.
		if bud, err = budget.Load(*budgets); err != nil {
			return err
		}
	}
	reportPath := *report
	if reportPath == "" {
		reportPath = filepath.Join(filepath.Dir(filepath.Clean(*out)), "build.json")
	}

	c, err := buildkit.Connect(ctx, *host, tls)
	if err != nil {
		return err
	}
	defer c.Close()

	// What the previous build into the same directory left: an image whose
	// config digest did not change keeps its tarball and its figures.
	previous := previousBuild(reportPath, string(p))
	prevResults := map[string]buildkit.Result{}
	for n, im := range previous {
		prevResults[n] = im.Result
	}

	rep := buildReport{Profile: string(p), Revision: rev, Created: ts, BuildkitHost: *host, Sequential: *sequential, Started: time.Now().UTC()}
	results, err := buildkit.Build(ctx, c, imgs, buildkit.Options{
		Spec: opts, RepoRoot: *repo, BaseDir: *baseCache, HostCA: *hostCA,
		OutDir: *out, OCI: *oci, Tag: *tag, Sequential: *sequential,
		Progress: progress, ProgressMode: *progressMode,
		CacheTo: cacheExports, CacheFrom: cacheImports, Previous: prevResults,
		Provenance: *provenance,
	})
	rep.WallSeconds = time.Since(rep.Started).Round(10 * time.Millisecond).Seconds()
	if err != nil {
		return err
	}

	var actual []budget.Actual
	for _, r := range results {
		bi, note := previous[r.Name], "unchanged, tarball kept"
		bi.Result = r
		if !r.Reused {
			known := map[string]int64{}
			for _, l := range previous[r.Name].LayerSizes {
				known[l.DiffID] = l.Uncompressed
			}
			info, err := imageinspect.ReadFile(r.Tarball, imageinspect.Options{Sizes: imageinspect.SizesFromBlobs, Uncompressed: known})
			if err != nil {
				return fmt.Errorf("inspecting %s: %w", r.Tarball, err)
			}
			bi = builtImage{Result: r, Compressed: info.Compressed, Uncompressed: info.Uncompressed, Layers: len(info.Layers), User: info.Config.Config.User}
			for _, l := range info.Layers {
				bi.LayerSizes = append(bi.LayerSizes, layerSize{DiffID: l.DiffID, Uncompressed: l.Uncompressed})
			}
			note = "exported"
		}
		rep.Images = append(rep.Images, bi)
		actual = append(actual, budget.Actual{Image: r.Name, Compressed: bi.Compressed, Uncompressed: bi.Uncompressed})
		fmt.Fprintf(stdout, "%-8s %s  %s  %s compressed, %s uncompressed, %d layers, %.1fs (%s)\n",
			r.Name, r.Tag, r.Tarball, budget.FormatSize(bi.Compressed), budget.FormatSize(bi.Uncompressed), bi.Layers, r.Seconds, note)
	}
	fmt.Fprintf(stdout, "built %d image(s) in %.1fs (%s)\n", len(results), rep.WallSeconds, map[bool]string{true: "sequential", false: "parallel"}[*sequential])

	if *load {
		d := dockerstack.FromEnv()
		if *dockerHost != "" {
			d.Host = *dockerHost
		}
		for _, r := range results {
			// The image ID Docker shows is the config digest: when the tag
			// already names this image, loading it again would change nothing.
			if info, err := d.InspectImage(ctx, r.Tag); err == nil && r.ConfigDigest != "" && info.ID == r.ConfigDigest {
				rep.Loaded = append(rep.Loaded, r.Tag)
				fmt.Fprintf(stdout, "%s is already in docker (%s), not loaded again\n", r.Tag, shortDigest(r.ConfigDigest))
				continue
			}
			if err := d.Load(ctx, r.Tarball); err != nil {
				return err
			}
			rep.Loaded = append(rep.Loaded, r.Tag)
			fmt.Fprintf(stdout, "loaded %s into docker\n", r.Tag)
		}
	}

	var budgetErr error
	if bud != nil {
		rep.Budgets = *budgets
		rep.Verdicts = bud.Evaluate(string(p), actual)
		pass := budget.Passed(rep.Verdicts)
		rep.BudgetPass = &pass
		table := budget.Table(rep.Verdicts)
		fmt.Fprintf(stdout, "\nSize budgets (%s, profile %s):\n\n%s", *budgets, p, table)
		sizes := filepath.Join(filepath.Dir(reportPath), "sizes.md")
		md := fmt.Sprintf("# Image sizes (profile %s)\n\n%s", p, table)
		if err := os.WriteFile(sizes, []byte(md), 0o644); err != nil {
			return err
		}
		budgetErr = budget.Check(rep.Verdicts)
	}
	if err := writeBuildReport(reportPath, rep); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", reportPath)
	return budgetErr
}

// previousBuild reads the images of the build.json an earlier run wrote at
// path for the same profile; nothing when there is none or it is unreadable
// (then every image is exported).
func previousBuild(path, profile string) map[string]builtImage {
	dt, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var rep buildReport
	if json.Unmarshal(dt, &rep) != nil || rep.Profile != profile {
		return nil
	}
	out := map[string]builtImage{}
	for _, im := range rep.Images {
		out[im.Name] = im
	}
	return out
}

func shortDigest(d string) string {
	if _, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return hex[:12]
	}
	return d
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, " ") }

func (m *multiFlag) Set(v string) error {
	*m = append(*m, v)
	return nil
}

func writeBuildReport(path string, rep buildReport) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	dt, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(dt, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// buildGit returns git's trimmed output, or "" outside a checkout.
func buildGit(ctx context.Context, dir string, args ...string) string {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return ""
	}
	return strings.TrimSpace(string(out))
}
