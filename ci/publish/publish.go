// Package publish pushes the images that `kgci build` wrote as docker-archive
// tarballs to an OCI registry and records digest-pinned references, so a
// deployment can name exactly the bytes CI tested.
package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/kidney-genetics/kidney-genetics-db/ci/attest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/report"
	"github.com/kidney-genetics/kidney-genetics-db/ci/sign"
)

// Environment variables that carry registry credentials. They are read
// here and nowhere else so that no code path can echo them.
const (
	EnvUsername = "KGCI_REGISTRY_USERNAME"
	EnvPassword = "KGCI_REGISTRY_PASSWORD"
)

// DefaultPrefix turns an image name into the repository name the seed
// architecture uses (kidney_genetics_backend, kidney_genetics_frontend).
const DefaultPrefix = "kidney_genetics_"

// ImageNames are the images a release consists of, in push order.
var ImageNames = []string{"backend", "frontend"}

// Options says what to push where.
type Options struct {
	ImagesDir string // holds <name>.tar for every name in ImageNames
	Registry  string // host[:port], e.g. ghcr.io or 127.0.0.1:5000
	Namespace string // path under the registry, e.g. kidney-genetics; may be empty
	Prefix    string // repository name prefix; empty means DefaultPrefix
	Revision  string // full git commit the images were built from
	Version   string // release version ("v1.2.3", "1.2.3", "refs/tags/v1.2.3"); empty for none
	Latest    bool   // also move the "latest" tag
	Insecure  bool   // plain HTTP (local test registries)
	// Auth, when set, is used for every request; otherwise credentials come
	// from Keychain (authn.DefaultKeychain: ~/.docker/config.json and its
	// credential helpers).
	Auth     authn.Authenticator
	Keychain authn.Keychain
	// Tested are the images an end-to-end run checked (results.json's "images"). Push
	// refuses a tarball whose digest is not the tested one. Nil pushes untested images,
	// which callers allow only when asked to (kgci publish --untested).
	Tested []report.Image
	// Signer, when set, signs every pushed digest (ci/sign: cosign's format),
	// and the signature is read back and verified before Push returns.
	Signer signature.SignerVerifier
	// Attest, when set, attaches the provenance (and the SBOM, when there is one)
	// to every pushed digest and reads them back.
	Attest *Attest
}

// Result is what results/publish.json holds.
type Result struct {
	Registry string   `json:"registry"`
	Revision string   `json:"revision"`
	Version  string   `json:"version,omitempty"`
	Tags     []string `json:"tags"`
	Images   []Pushed `json:"images"`
}

// Pushed describes one image after the push.
type Pushed struct {
	Name       string `json:"name"`       // backend or frontend
	Repository string `json:"repository"` // registry/namespace/kidney_genetics_backend
	Digest     string `json:"digest"`     // sha256:..., as the registry reports it after the push
	// TestedDigest is the manifest digest of the image the end-to-end checks ran
	// against; empty for an untested push. Push fails unless it equals Digest.
	TestedDigest string `json:"tested_digest,omitempty"`
	// Pinned is repository@digest: the reference to deploy, immune to a
	// tag being moved later.
	Pinned string   `json:"pinned"`
	Tags   []TagRef `json:"tags"`
	// Signature is the signature image (repository:sha256-<hex>.sig) that
	// holds a verified signature of Digest; empty when not signed.
	Signature string `json:"signature,omitempty"`
	// Attestations are the in-toto statements attached to Digest as OCI
	// referrers (ci/attest), read back after the push.
	Attestations []Attestation `json:"attestations,omitempty"`
}

// Attestation is one statement attached to a pushed image.
type Attestation struct {
	// Kind is buildkit-provenance, kgci-provenance or sbom.
	Kind          string `json:"kind"`
	PredicateType string `json:"predicate_type"`
	Digest        string `json:"digest"` // of the referrer artifact
}

// Attest says what to attach to each pushed image.
type Attest struct {
	Build attest.Build
	// SBOMDir holds <name>.spdx.json (test-e2e's results/sbom); an image without one
	// gets no SBOM statement.
	SBOMDir string
	// ImagesDir holds the tarballs and, from kgci build --provenance, BuildKit's own
	// provenance (<name>.provenance.json), attached beside kgci's.
	ImagesDir string
}

// TagRef is one tag of a pushed image.
type TagRef struct {
	Tag string `json:"tag"`
	Ref string `json:"ref"` // repository:tag
	// Pinned is repository:tag@digest: readable and still exact.
	Pinned string `json:"pinned"`
}

var (
	hexRevision = regexp.MustCompile(`^[0-9a-f]{7,64}$`)
	// The OCI distribution spec's tag grammar.
	validTag = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
)

// ShortRevisionLen is long enough to stay unambiguous in a repository
// with a long history, unlike git's 7-character default.
const ShortRevisionLen = 12

// Tags returns the tags a push applies: the release version (if any) and,
// for a release X.Y.Z, X.Y and X where it is the newest of its line
// (releaseTags), the short revision, and "latest" for the newest release or
// on request. existing are the tags the repositories already have.
func Tags(revision, version string, latest bool, existing []string) ([]string, error) {
	revision = strings.ToLower(strings.TrimSpace(revision))
	if !hexRevision.MatchString(revision) {
		return nil, fmt.Errorf("revision %q is not a git commit id (7-64 hex digits): pass --revision $(git rev-parse HEAD)", revision)
	}
	var tags []string
	if v := NormalizeVersion(version); v != "" {
		if !validTag.MatchString(v) {
			return nil, fmt.Errorf("version %q does not make a valid image tag (letters, digits, '.', '_', '-'; at most 128)", version)
		}
		tags = append(tags, v)
		moving, newest := releaseTags(v, existing)
		tags = append(tags, moving...)
		latest = latest || newest
	}
	short := revision
	if len(short) > ShortRevisionLen {
		short = short[:ShortRevisionLen]
	}
	tags = append(tags, short)
	if latest {
		tags = append(tags, "latest")
	}
	return tags, nil
}

// NormalizeVersion turns a git tag into an image tag: refs/tags/v1.2.3 and
// v1.2.3 both become 1.2.3. Other names pass through unchanged.
func NormalizeVersion(v string) string {
	v = strings.TrimPrefix(strings.TrimSpace(v), "refs/tags/")
	if len(v) > 1 && v[0] == 'v' && v[1] >= '0' && v[1] <= '9' {
		v = v[1:]
	}
	return v
}

// Repository is the full repository name of an image.
func Repository(registry, namespace, prefix, image string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	parts := []string{strings.TrimSuffix(registry, "/")}
	if ns := strings.Trim(namespace, "/"); ns != "" {
		parts = append(parts, ns)
	}
	return strings.Join(append(parts, prefix+image), "/")
}

// AuthFromEnv returns basic credentials from KGCI_REGISTRY_USERNAME and
// KGCI_REGISTRY_PASSWORD, or nil when neither is set (then the docker
// config keychain applies). Setting only one of them is a mistake worth
// stopping for rather than silently pushing anonymously.
func AuthFromEnv(getenv func(string) string) (authn.Authenticator, error) {
	user, pass := getenv(EnvUsername), getenv(EnvPassword)
	switch {
	case user == "" && pass == "":
		return nil, nil
	case user == "":
		return nil, fmt.Errorf("%s is set but %s is not: set both, or neither to use the docker config (docker login)", EnvPassword, EnvUsername)
	case pass == "":
		return nil, fmt.Errorf("%s is set but %s is not: set both, or neither to use the docker config (docker login)", EnvUsername, EnvPassword)
	}
	return authn.FromConfig(authn.AuthConfig{Username: user, Password: pass}), nil
}

// LoadImage reads the single image of a docker-archive tarball.
func LoadImage(path string) (v1.Image, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("image tarball %s: %w (run `go run ./ci/cmd/kgci build` first, or pass --images DIR)", path, err)
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		return nil, fmt.Errorf("read docker-archive %s: %w", path, err)
	}
	return img, nil
}

// Tarball describes an image tarball as a push of it will store it.
type Tarball struct {
	Path         string
	Digest       string // manifest digest
	ConfigDigest string // Docker's image ID
}

// DescribeTarball reads the digests of an image tarball with the code Push uses, so
// a tested digest and a pushed one are comparable.
func DescribeTarball(path string) (Tarball, error) {
	img, err := LoadImage(path)
	if err != nil {
		return Tarball{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return Tarball{}, fmt.Errorf("%s: manifest digest: %w", path, err)
	}
	c, err := img.ConfigName()
	if err != nil {
		return Tarball{}, fmt.Errorf("%s: config digest: %w", path, err)
	}
	return Tarball{Path: path, Digest: d.String(), ConfigDigest: c.String()}, nil
}

// RevisionLabel is where the build records the commit it built.
const RevisionLabel = "org.opencontainers.image.revision"

// Push uploads every image and tags it. It checks every tarball before the
// first upload, so a missing frontend does not leave a half-published
// release behind.
func Push(ctx context.Context, o Options) (*Result, error) {
	if o.Registry == "" {
		return nil, fmt.Errorf("no registry given: pass --registry (e.g. ghcr.io)")
	}
	// Checked before anything is read or sent; the moving tags need the
	// registry's tags and are worked out below.
	if _, err := Tags(o.Revision, o.Version, o.Latest, nil); err != nil {
		return nil, err
	}
	imgs := make([]v1.Image, len(ImageNames))
	var err error
	for i, n := range ImageNames {
		if imgs[i], err = LoadImage(filepath.Join(o.ImagesDir, n+".tar")); err != nil {
			return nil, err
		}
		if err := checkRevision(imgs[i], n, o.Revision); err != nil {
			return nil, err
		}
		if o.Tested != nil {
			if err := checkTested(imgs[i], n, o.Tested); err != nil {
				return nil, err
			}
		}
	}

	var nameOpts []name.Option
	if o.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	remoteOpts := []remote.Option{remote.WithContext(ctx)}
	switch {
	case o.Auth != nil:
		remoteOpts = append(remoteOpts, remote.WithAuth(o.Auth))
	case o.Keychain != nil:
		remoteOpts = append(remoteOpts, remote.WithAuthFromKeychain(o.Keychain))
	default:
		remoteOpts = append(remoteOpts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}

	// Both images get the same tags: a moving tag moves only if the version
	// is the newest in every repository.
	var existing []string
	for _, n := range ImageNames {
		t, err := existingTags(Repository(o.Registry, o.Namespace, o.Prefix, n), nameOpts, remoteOpts)
		if err != nil {
			return nil, explain(err, o.Registry, o.Insecure)
		}
		existing = append(existing, t...)
	}
	tags, err := Tags(o.Revision, o.Version, o.Latest, existing)
	if err != nil {
		return nil, err
	}
	res := &Result{Registry: o.Registry, Revision: o.Revision, Version: NormalizeVersion(o.Version), Tags: tags}
	for i, n := range ImageNames {
		repo := Repository(o.Registry, o.Namespace, o.Prefix, n)
		p, err := pushOne(imgs[i], n, repo, tags, nameOpts, remoteOpts)
		if err != nil {
			return nil, explain(err, o.Registry, o.Insecure)
		}
		if o.Tested != nil {
			p.TestedDigest = testedDigest(o.Tested, n)
			if p.TestedDigest != p.Digest {
				return nil, fmt.Errorf("%s: the registry stored %s, but the tested image is %s: the push did not preserve the tested bytes", n, p.Digest, p.TestedDigest)
			}
		}
		if o.Signer != nil {
			d, err := name.NewDigest(p.Pinned, nameOpts...)
			if err != nil {
				return nil, err
			}
			tag, err := sign.Sign(ctx, d, o.Signer, remoteOpts...)
			if err != nil {
				return nil, explain(err, o.Registry, o.Insecure)
			}
			if _, err := sign.Verify(ctx, d, o.Signer, remoteOpts...); err != nil {
				return nil, fmt.Errorf("%s: the signature did not verify after the push: %w", n, err)
			}
			p.Signature = tag.String()
		}
		if o.Attest != nil {
			if p.Attestations, err = attach(ctx, p, n, o.Attest, nameOpts, remoteOpts); err != nil {
				return nil, explain(err, o.Registry, o.Insecure)
			}
		}
		res.Images = append(res.Images, p)
	}
	return res, nil
}

// attach writes the provenance and the SBOM statements of one pushed image and
// reads them back: what is recorded is what a client will find.
func attach(ctx context.Context, p Pushed, imgName string, a *Attest, nameOpts []name.Option, remoteOpts []remote.Option) ([]Attestation, error) {
	d, err := name.NewDigest(p.Pinned, nameOpts...)
	if err != nil {
		return nil, err
	}
	h, err := v1.NewHash(p.Digest)
	if err != nil {
		return nil, err
	}
	prov, err := attest.Provenance(p.Repository, h, a.Build)
	if err != nil {
		return nil, err
	}
	statements := map[string][]byte{kindKgci: prov}
	if a.ImagesDir != "" {
		bk, err := os.ReadFile(filepath.Join(a.ImagesDir, imgName+attest.BuildKitSuffix))
		switch {
		case err == nil:
			if statements[kindBuildKit], err = attest.FromBuildKit(bk, p.Repository, h); err != nil {
				return nil, fmt.Errorf("%s: %w", imgName, err)
			}
		case !os.IsNotExist(err):
			return nil, err
		}
	}
	if a.SBOMDir != "" {
		spdx, err := os.ReadFile(filepath.Join(a.SBOMDir, imgName+".spdx.json"))
		switch {
		case err == nil:
			if statements[kindSBOM], err = attest.SBOM(p.Repository, h, spdx); err != nil {
				return nil, fmt.Errorf("%s: %w", imgName, err)
			}
		case !os.IsNotExist(err):
			return nil, err
		}
	}
	for _, k := range attestationKinds {
		if st, ok := statements[k.name]; ok {
			if _, err := attest.Attach(ctx, d, st, k.predicate, remoteOpts...); err != nil {
				return nil, err
			}
		}
	}
	found, err := attest.List(ctx, d, remoteOpts...)
	if err != nil {
		return nil, err
	}
	var out []Attestation
	for _, k := range attestationKinds {
		st, ok := statements[k.name]
		if !ok {
			continue
		}
		var got *attest.Found
		for i := range found {
			if found[i].PredicateType == k.predicate && bytes.Equal(found[i].Statement, st) {
				got = &found[i]
			}
		}
		if got == nil {
			return nil, fmt.Errorf("%s: the %s statement attached to %s is not among its referrers", imgName, k.label, p.Digest)
		}
		out = append(out, Attestation{Kind: k.name, PredicateType: k.predicate, Digest: got.Digest.String()})
	}
	return out, nil
}

// The statements attached to a pushed image, in this order.
const (
	kindBuildKit = "buildkit-provenance" // BuildKit's own (kgci build --provenance)
	kindKgci     = "kgci-provenance"     // kgci's, from what it knows at publish time
	kindSBOM     = "sbom"
)

var attestationKinds = []struct{ name, predicate, label string }{
	{kindBuildKit, attest.PredicateSLSA, "SLSA provenance v1 (BuildKit)"},
	{kindKgci, attest.PredicateSLSA, "SLSA provenance v1 (kgci)"},
	{kindSBOM, attest.PredicateSPDX, "SBOM (SPDX)"},
}

func pushOne(img v1.Image, imgName, repo string, tags []string, nameOpts []name.Option, remoteOpts []remote.Option) (Pushed, error) {
	p := Pushed{Name: imgName, Repository: repo}
	for i, t := range tags {
		ref, err := name.NewTag(repo+":"+t, nameOpts...)
		if err != nil {
			return Pushed{}, fmt.Errorf("%s: bad reference %s:%s: %w", imgName, repo, t, err)
		}
		// The first tag uploads blobs and manifest; the others only point
		// another tag at the manifest that is already there.
		if i == 0 {
			err = remote.Write(ref, img, remoteOpts...)
		} else {
			err = remote.Tag(ref, img, remoteOpts...)
		}
		if err != nil {
			return Pushed{}, fmt.Errorf("push %s: %w", ref, err)
		}
		// What the registry now serves under the tag, not what we computed.
		desc, err := remote.Head(ref, remoteOpts...)
		if err != nil {
			return Pushed{}, fmt.Errorf("read back %s: %w", ref, err)
		}
		if i == 0 {
			p.Digest, p.Pinned = desc.Digest.String(), repo+"@"+desc.Digest.String()
		} else if desc.Digest.String() != p.Digest {
			return Pushed{}, fmt.Errorf("%s: tag %s names %s, tag %s names %s", imgName, t, desc.Digest, tags[0], p.Digest)
		}
		p.Tags = append(p.Tags, TagRef{Tag: t, Ref: ref.String(), Pinned: ref.String() + "@" + desc.Digest.String()})
	}
	return p, nil
}

// checkTested refuses to push an image that is not the one the checks ran against.
func checkTested(img v1.Image, imgName string, tested []report.Image) error {
	want := testedDigest(tested, imgName)
	if want == "" {
		return fmt.Errorf("%s: the test results name no tested %s image with a digest: run `kgci test-e2e --images DIR` on these tarballs first, or pass --untested", imgName, imgName)
	}
	d, err := img.Digest()
	if err != nil {
		return fmt.Errorf("%s: compute digest: %w", imgName, err)
	}
	if d.String() != want {
		return fmt.Errorf("%s: this tarball is %s, but the end-to-end checks ran against %s: publish the tarballs that were tested (or test these)", imgName, d, want)
	}
	return nil
}

func testedDigest(tested []report.Image, service string) string {
	for _, t := range tested {
		if t.Service == service {
			return t.Digest
		}
	}
	return ""
}

// checkRevision refuses to tag an image with a commit it was not built
// from: the tag would then name the wrong source.
func checkRevision(img v1.Image, imgName, revision string) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("%s: read image config: %w", imgName, err)
	}
	got := cf.Config.Labels[RevisionLabel]
	if got == "" || got == revision {
		return nil
	}
	return fmt.Errorf("%s image was built from revision %s but the push would tag it as %s: rebuild at this commit (go run ./ci/cmd/kgci build) or pass --revision %s", imgName, got, revision, got)
}

// ImageRevision returns the revision label of an image tarball, for
// callers that default --revision to what was built.
func ImageRevision(path string) (string, error) {
	img, err := LoadImage(path)
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("read image config of %s: %w", path, err)
	}
	return cf.Config.Labels[RevisionLabel], nil
}

// WriteResults writes publish.json and publish.md into dir.
func WriteResults(dir string, r *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "publish.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "publish.md"), []byte(Markdown(r)), 0o644)
}

// Markdown is a fragment for the CI job summary and release notes.
// AttestationsLine says in one line which statements an image carries.
func AttestationsLine(a []Attestation) string {
	if len(a) == 0 {
		return "none"
	}
	var parts []string
	for _, x := range a {
		label := x.PredicateType
		for _, k := range attestationKinds {
			if k.name == x.Kind {
				label = k.label
			}
		}
		parts = append(parts, fmt.Sprintf("%s `%s`", label, short(x.Digest)))
	}
	return strings.Join(parts, ", ") + " (OCI referrers)"
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func Markdown(r *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Published images\n\nRevision `%s`", r.Revision)
	if r.Version != "" {
		fmt.Fprintf(&b, ", version `%s`", r.Version)
	}
	b.WriteString(". Deploy by digest: a tag can be moved, a digest cannot.\n\n")
	b.WriteString("| Image | Tested digest | Pushed digest | Tags | Signature | Attestations |\n|---|---|---|---|---|---|\n")
	for _, p := range r.Images {
		tested := "`" + p.TestedDigest + "`"
		switch {
		case p.TestedDigest == "":
			tested = "⚠️ untested (--untested)"
		case p.TestedDigest == p.Digest:
			tested += " ✅ equal"
		}
		var tags []string
		for _, t := range p.Tags {
			tags = append(tags, "`"+t.Tag+"`")
		}
		signed := "not signed"
		if p.Signature != "" {
			signed = "✅ verified, `" + p.Signature + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | `%s` | %s | %s | %s |\n", p.Name, tested, p.Digest, strings.Join(tags, ", "), signed, AttestationsLine(p.Attestations))
	}
	b.WriteString("\n```\n")
	for _, p := range r.Images {
		fmt.Fprintf(&b, "%s\n", p.Pinned)
		for _, t := range p.Tags {
			fmt.Fprintf(&b, "%s\n", t.Pinned)
		}
	}
	b.WriteString("```\n")
	return b.String()
}
