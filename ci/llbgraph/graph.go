// Package llbgraph translates the image description in ci/spec into a
// BuildKit LLB graph. It never talks to a daemon: the graph can be marshaled
// and inspected in tests, and ci/buildkit solves it.
package llbgraph

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/moby/buildkit/client/llb"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// Defaults for Inputs fields left empty.
const (
	DefaultSourceName   = "source"
	DefaultHostCASecret = "host-ca"
)

// DefaultPlatform is the only platform our images are built for.
var DefaultPlatform = ocispecs.Platform{OS: "linux", Architecture: "amd64"}

// Inputs are what the graph depends on besides the description itself.
type Inputs struct {
	Profile spec.Profile
	// Layouts are the offline bases (ReadLayouts); required for every base
	// kind the image uses when Profile is offline.
	Layouts map[spec.BaseKind]Layout
	// Resolver fetches registry image configs so that upstream bases
	// contribute their env and working directory; nil leaves them out
	// (tests), a gateway client provides it in real builds.
	Resolver llb.ImageMetaResolver
	// Platform defaults to linux/amd64.
	Platform *ocispecs.Platform
	// SourceName is the llb.Local name the repository root is served as.
	SourceName string
	// HostCASecret is the secret id the host CA bundle is provided under.
	HostCASecret string
	// OCISessionID is the session serving the layouts' content stores;
	// empty means whichever session of the build has them.
	OCISessionID string
}

func (in Inputs) platform() ocispecs.Platform {
	if in.Platform != nil {
		return *in.Platform
	}
	return DefaultPlatform
}

func (in Inputs) sourceName() string {
	if in.SourceName != "" {
		return in.SourceName
	}
	return DefaultSourceName
}

func (in Inputs) hostCASecret() string {
	if in.HostCASecret != "" {
		return in.HostCASecret
	}
	return DefaultHostCASecret
}

// Build returns the LLB state of img's final stage.
func Build(img spec.Image, in Inputs) (llb.State, error) {
	if err := img.Validate(); err != nil {
		return llb.State{}, err
	}
	src := Source(img, in)
	stages := map[string]llb.State{}
	var st llb.State
	for _, s := range img.Stages {
		var err error
		st, err = base(s.Base, in)
		if err != nil {
			return llb.State{}, fmt.Errorf("image %s stage %s: %w", img.Name, s.Name, err)
		}
		for n, o := range s.Ops {
			st, err = apply(st, o, stepPrefix(img, s, n), src, stages, in)
			if err != nil {
				return llb.State{}, fmt.Errorf("image %s stage %s op %d: %w", img.Name, s.Name, n, err)
			}
		}
		stages[s.Name] = st
	}
	return st, nil
}

// stepPrefix is "[image stage n/total]", the start of each step's name.
func stepPrefix(img spec.Image, s spec.Stage, n int) string {
	return fmt.Sprintf("[%s %s %d/%d]", img.Name, s.Name, n+1, len(s.Ops))
}

// StepName is what op n of stage s is called, in the build's progress and in
// the image's history.
func StepName(img spec.Image, s spec.Stage, n int, o spec.Op) string {
	name := stepPrefix(img, s, n)
	switch o := o.(type) {
	case spec.Run:
		return runName(name, o)
	case spec.CopySrc:
		return copySrcName(name, o)
	case spec.CopyStage:
		return copyStageName(name, o)
	case spec.CopyImage:
		return copyImageName(name, o)
	case spec.Env:
		return fmt.Sprintf("%s ENV %s=%s", name, o.Key, o.Value)
	case spec.Workdir:
		return workdirName(name, o)
	}
	return fmt.Sprintf("%s %T", name, o)
}

// Marshal is Build followed by Marshal for the platform.
func Marshal(ctx context.Context, img spec.Image, in Inputs) (*llb.Definition, error) {
	st, err := Build(img, in)
	if err != nil {
		return nil, err
	}
	return st.Marshal(ctx, llb.Platform(in.platform()))
}

func apply(st llb.State, o spec.Op, name string, src llb.State, stages map[string]llb.State, in Inputs) (llb.State, error) {
	switch o := o.(type) {
	case spec.Run:
		return run(st, o, name, in), nil
	case spec.CopySrc:
		return copySrc(st, o, name, src), nil
	case spec.CopyStage:
		from, ok := stages[o.Stage]
		if !ok {
			return llb.State{}, fmt.Errorf("copy from unknown stage %q", o.Stage)
		}
		return copyStage(st, o, name, from), nil
	case spec.CopyImage:
		return copyImage(st, o, name, in), nil
	case spec.Env:
		return st.AddEnv(o.Key, o.Value), nil
	case spec.Workdir:
		return workdir(st, o, name), nil
	}
	return llb.State{}, fmt.Errorf("unsupported op %T", o)
}

// base is the stage's FROM. Offline bases come from a session content store
// pinned by digest; a local directory would be re-sent and never cached.
func base(k spec.BaseKind, in Inputs) (llb.State, error) {
	p := in.platform()
	src, ok := spec.Bases(in.Profile)[k]
	if !ok {
		return llb.State{}, fmt.Errorf("profile %s has no %s base", in.Profile, k)
	}
	if !src.Layout {
		opts := []llb.ImageOption{llb.Platform(p), llb.WithCustomName("FROM " + src.Ref)}
		if in.Resolver != nil {
			opts = append(opts, llb.WithMetaResolver(in.Resolver))
		}
		return llb.Image(src.Ref, opts...), nil
	}
	l, ok := in.Layouts[k]
	if !ok {
		return llb.State{}, fmt.Errorf("%w: no layout given for base %q (expected under %s); run scripts/make-base-images.sh", ErrMissingLayout, k, DefaultBaseDir())
	}
	ref, err := LayoutRef(l)
	if err != nil {
		return llb.State{}, err
	}
	st := llb.OCILayout(ref,
		llb.OCIStore(in.OCISessionID, l.StoreID),
		llb.Platform(p),
		llb.WithCustomName("FROM "+layoutName(l)),
	)
	return withImageConfig(st, l.Config)
}

// layoutName is how an offline base is named in step names and the history.
func layoutName(l Layout) string { return fmt.Sprintf("oci-layout %s@%s", l.StoreID, l.Digest) }

// LayoutRef is the reference BuildKit resolves inside the layout's store:
// any name, pinned by the layout's digest.
func LayoutRef(l Layout) (string, error) {
	if err := l.Digest.Validate(); err != nil {
		return "", fmt.Errorf("base %s: bad digest %q: %w", l.Kind, l.Digest, err)
	}
	return fmt.Sprintf("docker.io/kidney-base/%s@%s", l.StoreID, l.Digest), nil
}

// withImageConfig is FROM's inheritance of env and working directory; the
// layout's own platform is ignored in favour of the requested one.
func withImageConfig(st llb.State, cfg []byte) (llb.State, error) {
	c, err := parseConfig(cfg)
	if err != nil {
		return llb.State{}, fmt.Errorf("base image config: %w", err)
	}
	for _, e := range c.Config.Env {
		k, v, _ := strings.Cut(e, "=")
		if k != "" {
			st = st.AddEnv(k, v)
		}
	}
	if c.Config.WorkingDir != "" {
		st = st.Dir(c.Config.WorkingDir)
	}
	return st, nil
}

func run(st llb.State, r spec.Run, name string, in Inputs) llb.State {
	opts := []llb.RunOption{
		llb.Args(r.Args),
		llb.WithCustomName(runName(name, r)),
	}
	for _, kv := range r.Env {
		opts = append(opts, llb.AddEnv(kv.Key, kv.Value))
	}
	for _, c := range r.Caches {
		sharing := llb.CacheMountShared
		if c.Locked {
			sharing = llb.CacheMountLocked
		}
		opts = append(opts, llb.AddMount(c.Path, llb.Scratch(), llb.AsPersistentCacheDir(c.ID, sharing)))
	}
	if r.HostCA {
		opts = append(opts, llb.AddSecret(spec.HostCAPath, llb.SecretID(in.hostCASecret())))
	}
	return st.Run(opts...).Root()
}

// workdir creates the directory as Dockerfile's WORKDIR does, so a later
// RUN does not depend on the runtime creating its cwd.
func workdir(st llb.State, w spec.Workdir, name string) llb.State {
	st = st.Dir(w.Path)
	return st.File(llb.Mkdir(w.Path, 0o755, llb.WithParents(true)), llb.WithCustomName(workdirName(name, w)))
}

// copyInfo is the one meaning of spec's copy ops (see spec.CopySrc):
// a directory's contents, or one file, at the destination, parents
// created, no wildcards; the owner is already validated.
func copyInfo(owner string, dir bool) *llb.CopyInfo {
	ci := &llb.CopyInfo{
		CreateDestPath:      true,
		CopyDirContentsOnly: dir,
	}
	if owner != "" {
		ci.ChownOpt = chown(owner)
	}
	return ci
}

func chown(owner string) *llb.ChownOpt {
	var co llb.CopyInfo
	llb.WithUser(owner).SetCopyOption(&co)
	return co.ChownOpt
}

func copySrc(st llb.State, c spec.CopySrc, name string, src llb.State) llb.State {
	ci := copyInfo(c.Owner, c.Dir)
	ci.ExcludePatterns = c.Exclude
	from := c.SourcePath()
	return st.File(llb.Copy(src, "/"+from, c.To, ci), llb.WithCustomName(copySrcName(name, c)))
}

func copyStage(st llb.State, c spec.CopyStage, name string, from llb.State) llb.State {
	return st.File(llb.Copy(from, c.From, c.To, copyInfo(c.Owner, c.Dir)), llb.WithCustomName(copyStageName(name, c)))
}

func copyImage(st llb.State, c spec.CopyImage, name string, in Inputs) llb.State {
	// Only files are taken from it: its config (env, workdir) is not
	// needed, so no metadata round trip to the registry.
	img := llb.Image(c.Ref, llb.Platform(in.platform()))
	return st.File(llb.Copy(img, c.From, c.To, copyInfo("", false)), llb.WithCustomName(copyImageName(name, c)))
}

// Source is the repository root as the image needs it: only the paths its
// CopySrc ops read are transferred, so a frontend edit neither re-sends nor
// re-checksums anything for the backend build.
func Source(img spec.Image, in Inputs) llb.State {
	inc, exc := SourcePatterns(img)
	return llb.Local(in.sourceName(),
		llb.IncludePatterns(inc),
		llb.ExcludePatterns(exc),
		// A per-image hint keeps the daemon's incremental copies of the two
		// images' sources apart.
		llb.SharedKeyHint("kidney-"+img.Name+"-source"),
		// Otherwise llb.Local draws a random id and no two marshals of the
		// same description are equal; file contents still decide caching.
		llb.LocalUniqueID("kidney-"+img.Name+"-source"),
		llb.WithCustomName(fmt.Sprintf("[%s] source %s", img.Name, strings.Join(inc, " "))),
	)
}

// SourcePatterns derives the Local include and exclude patterns from the
// image's CopySrc ops. Excludes are relative to each copy's From.
func SourcePatterns(img spec.Image) (include, exclude []string) {
	incSet, excSet := map[string]bool{}, map[string]bool{}
	for _, s := range img.Stages {
		for _, o := range s.Ops {
			c, ok := o.(spec.CopySrc)
			if !ok {
				continue
			}
			from := c.SourcePath()
			incSet[from] = true
			for _, e := range c.Exclude {
				excSet[path.Join(from, e)] = true
			}
		}
	}
	return sortedSet(incSet), sortedSet(excSet)
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// BaseKinds lists the bases an image's stages use, in first-use order.
func BaseKinds(img spec.Image) []spec.BaseKind {
	var out []spec.BaseKind
	seen := map[spec.BaseKind]bool{}
	for _, s := range img.Stages {
		if !seen[s.Base] {
			seen[s.Base] = true
			out = append(out, s.Base)
		}
	}
	return out
}

// DefinitionDigest identifies a marshaled graph; equal digests mean equal
// graphs (used by tests and recorded in build.json).
func DefinitionDigest(def *llb.Definition) digest.Digest {
	h := digest.SHA256.Digester()
	for _, dt := range def.Def {
		h.Hash().Write(dt)
	}
	return h.Digest()
}

func runName(name string, r spec.Run) string { return name + " RUN " + strings.Join(r.Args, " ") }

func workdirName(name string, w spec.Workdir) string { return name + " WORKDIR " + w.Path }

func copySrcName(name string, c spec.CopySrc) string {
	return fmt.Sprintf("%s COPY %s %s", name, c.SourcePath(), c.To)
}

func copyStageName(name string, c spec.CopyStage) string {
	return fmt.Sprintf("%s COPY --from=%s %s %s", name, c.Stage, c.From, c.To)
}

func copyImageName(name string, c spec.CopyImage) string {
	return fmt.Sprintf("%s COPY --from=%s %s %s", name, c.Ref, c.From, c.To)
}
