// Package spec describes the production images once, as data. Two translators
// turn the same description into a BuildKit LLB graph (ci/llbgraph) and into
// Dagger container calls (ci/daggerbuild), so the images built in our CI and
// the ones users build with `dagger call build` cannot drift apart.
package spec

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Profile selects where base images and packages come from. The stages,
// users, ports and checks are identical in both.
type Profile string

const (
	// Upstream uses public registry images, uv and npm: what users run.
	Upstream Profile = "upstream"
	// Offline uses base images made locally from Debian packages
	// (scripts/make-base-images.sh) and package sources reachable without
	// a container registry or PyPI: what air-gapped users and our CI run.
	Offline Profile = "offline"
)

// ParseProfile turns a user-supplied name into a Profile.
func ParseProfile(s string) (Profile, error) {
	switch Profile(s) {
	case Upstream, Offline:
		return Profile(s), nil
	case "":
		return Upstream, nil
	}
	return "", fmt.Errorf("unknown profile %q: use %q (public images, uv, npm) or %q (local Debian-made base images)", s, Upstream, Offline)
}

// BaseKind names the role a base image plays; each profile maps it to a
// concrete reference.
type BaseKind string

const (
	BasePython   BaseKind = "python"
	BaseNode     BaseKind = "node"
	BaseNginx    BaseKind = "nginx"
	BasePostgres BaseKind = "postgres"

	// The Dagger path's tools: a Go toolchain that compiles kgci, and a
	// Docker engine in which kgci runs the stack (docs/dagger.md says why).
	BaseGo     BaseKind = "go"
	BaseDocker BaseKind = "docker"
)

// BaseKinds lists the bases the images and the test stack need.
var BaseKinds = []BaseKind{BasePython, BaseNode, BaseNginx, BasePostgres}

// ToolBaseKinds lists the bases only the Dagger path needs.
var ToolBaseKinds = []BaseKind{BaseGo, BaseDocker}

// Source is where a base image comes from. For the upstream profile Ref is
// a registry reference; for the offline profile it is the name of an OCI
// layout under the base-image cache (scripts/make-base-images.sh).
type Source struct {
	Kind BaseKind
	Ref  string
	// Layout is true when Ref names a local OCI layout rather than a
	// registry image.
	Layout bool
}

// Bases returns the base image of every kind for a profile.
func Bases(p Profile) map[BaseKind]Source {
	if p == Offline {
		m := map[BaseKind]Source{}
		for _, k := range append(append([]BaseKind{}, BaseKinds...), ToolBaseKinds...) {
			m[k] = Source{Kind: k, Ref: string(k), Layout: true}
		}
		return m
	}
	return map[BaseKind]Source{
		BasePython: {Kind: BasePython, Ref: "docker.io/library/python:3.11-slim"},
		BaseNode:   {Kind: BaseNode, Ref: "docker.io/library/node:20-alpine"},
		BaseNginx:  {Kind: BaseNginx, Ref: "docker.io/library/nginx:1.26-alpine"},
		// The seed names postgres:14-alpine; 14 reaches end of life in
		// November 2026, so the ephemeral test database uses 16.
		BasePostgres: {Kind: BasePostgres, Ref: "docker.io/library/postgres:16-alpine"},
		// The go line of go.mod is below 1.26, so any 1.26 toolchain builds
		// kgci; the Debian variant has git, which reads the commit time.
		BaseGo: {Kind: BaseGo, Ref: "docker.io/library/golang:1.26-bookworm"},
		// 27 keeps Docker's classic image store by default (29 switched to
		// containerd's), so image IDs are config digests as kgci expects.
		BaseDocker: {Kind: BaseDocker, Ref: "docker.io/library/docker:27-dind"},
	}
}

// CheckerSetup is what the profile's Docker base needs before it can run the
// checks: Chromium for the browser.* checks. The offline base has it already
// (scripts/make-base-images.sh); docker:27-dind is Alpine without it.
func CheckerSetup(p Profile) [][]string {
	if p == Upstream {
		return [][]string{{"apk", "add", "--no-cache", "chromium", "font-dejavu"}}
	}
	return nil
}

// UVImage provides the uv binary for the upstream backend builder, copied
// in the way uv's own documentation recommends.
const UVImage = "ghcr.io/astral-sh/uv:0.9.9"

// Op is one step of a stage. The concrete types below are the whole
// vocabulary both translators must understand.
type Op interface{ op() }

// Run executes a command in the stage's filesystem.
type Run struct {
	Args []string
	Env  []KV
	// Caches are persistent cache mounts (package manager caches). They
	// never end up in an image layer.
	Caches []Cache
	// HostCA mounts the host's CA bundle read-only at HostCAPath for this
	// step only (the offline profile behind a TLS-re-signing proxy). It is
	// a secret mount, never a layer.
	HostCA bool
}

// HostCAPath is where Run.HostCA mounts the bundle.
const HostCAPath = "/run/secrets/host-ca.crt"

// Cache is a persistent cache mount.
type Cache struct {
	ID     string // stable across builds and machines' runs
	Path   string
	Locked bool // exclusive use (apt's lock files do not tolerate sharing)
}

// CopySrc copies from the repository source (the build context). From is
// relative to the repository root and stays inside it.
//
// CopySrc and CopyStage have one meaning, which both translators
// implement and TestTranslatorsAgree (ci/spec) checks on a small
// synthetic image:
//
//   - Dir says whether From is a directory or one file. It is stated, not
//     derived, because neither translator can look: the LLB graph is
//     marshaled without reading the build context, an earlier stage's
//     files do not exist until it is built, and Dagger's API must be told
//     File or Directory before anything is evaluated.
//   - Dir false: From is one file and lands at To, which names the file
//     itself (Dockerfile `COPY a.txt /dest/b.txt`). To must not be an
//     existing directory: both engines would then put the file inside it.
//   - Dir true: the contents of From go into the directory To, not From
//     itself (Dockerfile `COPY dir/ /dest/`): From/x lands at To/x. To is
//     created if missing; what To already holds stays unless the copy
//     writes the same path, which it replaces.
//   - To is absolute. Missing parent directories of To are created.
//   - From names a path, never a pattern: no wildcards (*?[), since Dagger
//     takes a path; a trailing slash is not significant.
//   - Owner is numeric "uid:gid", both given, so that it means the same
//     without an /etc/passwd lookup in either engine. Set, every copied
//     file and directory, To included, gets it. Empty, ownership is the
//     source's: files from the repository arrive owned by 0:0, files from
//     a stage keep the owner they have there.
//   - Permission bits are the source's; no copy changes a mode.
//   - Exclude (CopySrc with Dir only) lists patterns relative to From, in
//     .dockerignore syntax; matching paths are not copied (ci/llbgraph
//     does not even send them). CopyStage has none: a stage shapes its
//     own output.
//
// Image.Validate refuses a copy outside this meaning.
type CopySrc struct {
	From    string
	To      string
	Owner   string // "uid:gid", empty keeps the source's (0:0)
	Dir     bool   // From is a directory whose contents go into To
	Exclude []string
}

// CopyStage copies from an earlier stage of the same image. From is an
// absolute path in that stage; otherwise the meaning is CopySrc's.
type CopyStage struct {
	Stage string
	From  string
	To    string
	Owner string // "uid:gid", empty keeps the owner the files have in Stage
	Dir   bool   // From is a directory whose contents go into To
}

// CopyImage copies one file out of another image (e.g. the uv binary) to
// To, as a file CopySrc does, ownership and mode kept.
type CopyImage struct {
	Ref  string
	From string
	To   string
}

// SourcePath is From as a clean path relative to the repository root.
func (c CopySrc) SourcePath() string {
	return strings.TrimPrefix(path.Clean("/"+c.From), "/")
}

// Env sets a variable for later steps of the stage.
type Env struct{ KV }

// Workdir sets the working directory for later steps.
type Workdir struct{ Path string }

func (Run) op()       {}
func (CopySrc) op()   {}
func (CopyStage) op() {}
func (CopyImage) op() {}
func (Env) op()       {}
func (Workdir) op()   {}

// KV is an ordered environment entry.
type KV struct{ Key, Value string }

// Stage is one FROM ... AS name section.
type Stage struct {
	Name string
	Base BaseKind
	Ops  []Op
}

// Healthcheck mirrors Docker's HEALTHCHECK; durations in seconds.
type Healthcheck struct {
	Test        []string // e.g. ["CMD","curl","-fsS","http://127.0.0.1:8000/api/health"]
	Interval    int
	Timeout     int
	StartPeriod int
	Retries     int
}

// Config is the OCI image configuration of the final stage.
type Config struct {
	User         string
	Env          []KV
	Entrypoint   []string
	Cmd          []string
	WorkingDir   string
	ExposedPorts []string // "8000/tcp"
	StopSignal   string
	Healthcheck  *Healthcheck
	Labels       map[string]string
}

// Image is a multi-stage build whose last stage is the runtime image.
type Image struct {
	Name   string // "backend" or "frontend"
	Tag    string // local tag, e.g. kidney_genetics_backend:latest
	Stages []Stage
	Config Config
}

// Validate catches description mistakes before any engine is involved:
// a copy from a stage that does not exist (or comes later), an empty
// command, a config without a user.
func (i Image) Validate() error {
	if len(i.Stages) == 0 {
		return fmt.Errorf("image %s: no stages", i.Name)
	}
	seen := map[string]bool{}
	for _, s := range i.Stages {
		if seen[s.Name] {
			return fmt.Errorf("image %s: stage %q defined twice", i.Name, s.Name)
		}
		for n, o := range s.Ops {
			switch o := o.(type) {
			case Run:
				if len(o.Args) == 0 {
					return fmt.Errorf("image %s stage %s op %d: empty command", i.Name, s.Name, n)
				}
			case CopySrc:
				if err := o.check(); err != nil {
					return fmt.Errorf("image %s stage %s op %d: %w", i.Name, s.Name, n, err)
				}
			case CopyStage:
				if !seen[o.Stage] {
					return fmt.Errorf("image %s stage %s op %d: copies from stage %q, which is not an earlier stage", i.Name, s.Name, n, o.Stage)
				}
				if err := o.check(); err != nil {
					return fmt.Errorf("image %s stage %s op %d: %w", i.Name, s.Name, n, err)
				}
			}
		}
		seen[s.Name] = true
	}
	if i.Config.User == "" || i.Config.User == "root" || i.Config.User == "0" {
		return fmt.Errorf("image %s: runtime user must be a non-root user, got %q", i.Name, i.Config.User)
	}
	return nil
}

var numericOwner = regexp.MustCompile(`^[0-9]+:[0-9]+$`)

// checkCopy refuses what the copy ops' meaning (above CopySrc) leaves out.
func checkCopy(from, to, owner string) error {
	if strings.ContainsAny(from, "*?[") {
		return fmt.Errorf("copy from %q: wildcards are not supported; name the file or directory", from)
	}
	if !path.IsAbs(to) {
		return fmt.Errorf("copy to %q: the destination must be an absolute path", to)
	}
	if owner != "" && !numericOwner.MatchString(owner) {
		return fmt.Errorf("owner %q: want \"uid:gid\", both numeric", owner)
	}
	return nil
}

func (c CopySrc) check() error {
	if err := checkCopy(c.From, c.To, c.Owner); err != nil {
		return err
	}
	if up := path.Clean(c.From); c.From == "" || path.IsAbs(c.From) || c.SourcePath() == "" || up == ".." || strings.HasPrefix(up, "../") {
		return fmt.Errorf("copy from %q: want a path relative to the repository root, inside it", c.From)
	}
	if !c.Dir && len(c.Exclude) > 0 {
		return fmt.Errorf("copy of the file %s has exclude patterns; they only make sense for a directory (set Dir)", c.From)
	}
	return nil
}

func (c CopyStage) check() error {
	if err := checkCopy(c.From, c.To, c.Owner); err != nil {
		return err
	}
	if !path.IsAbs(c.From) {
		return fmt.Errorf("copy from stage %s path %q: want an absolute path", c.Stage, c.From)
	}
	return nil
}

// Labels returns the standard OCI annotations plus extra ones, sorted keys
// being the caller's business.
func Labels(revision, created, title string) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":    title,
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.created":  created,
		"org.opencontainers.image.source":   "https://github.com/kidney-genetics/kidney-genetics-db",
		"org.opencontainers.image.licenses": "MIT",
	}
}
