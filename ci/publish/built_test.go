package publish

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kidney-genetics/kidney-genetics-db/ci/publish/publishtest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/report"
)

// TestPublishBuiltImages pushes the tarballs the real pipeline wrote
// (`kgci build`, results/images; KGCI_IMAGES overrides) to a registry
// started here and pulls them back: the synthetic images of the other tests
// cannot show that our real multi-layer images survive the round trip with
// the same digest and the same non-root user. It needs the pipeline to have
// run, so only under KGCI_E2E=1 (scripts/test.sh), where missing tarballs
// are a failure.
func TestPublishBuiltImages(t *testing.T) {
	if os.Getenv("KGCI_E2E") != "1" {
		t.Skip("needs the images from kgci build: set KGCI_E2E=1 after scripts/pipeline.sh")
	}
	dir := os.Getenv("KGCI_IMAGES")
	if dir == "" {
		dir = filepath.Join("..", "..", "results", "images")
	}
	local := map[string]string{}
	revision := ""
	for _, n := range ImageNames {
		img, err := tarball.ImageFromPath(filepath.Join(dir, n+".tar"), nil)
		if err != nil {
			t.Fatalf("KGCI_E2E=1 but the built %s image is not readable in %s (run scripts/pipeline.sh first): %v", n, dir, err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		local[n] = d.String()
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		revision = cfg.Config.Labels[RevisionLabel]
	}
	if !hexRevision.MatchString(revision) {
		t.Fatalf("built images carry no usable %s label: %q", RevisionLabel, revision)
	}

	// The pipeline's end-to-end run tested these tarballs and recorded their digests.
	tested, err := report.ReadSummary(filepath.Dir(filepath.Clean(dir)))
	if err != nil {
		t.Fatalf("KGCI_E2E=1 but no results.json next to %s (scripts/pipeline.sh runs test-e2e --images): %v", dir, err)
	}
	if !tested.Passed {
		t.Fatalf("the pipeline's end-to-end run failed; nothing to publish")
	}

	host, _ := publishtest.StartRegistry(t, "ci", "not-a-real-secret")
	t.Setenv("KGCI_REGISTRY_USERNAME", "ci")
	t.Setenv("KGCI_REGISTRY_PASSWORD", "not-a-real-secret")
	// Credentials the way kgci publish takes them: from the environment.
	envAuth, err := AuthFromEnv(os.Getenv)
	if err != nil || envAuth == nil {
		t.Fatalf("AuthFromEnv: %v %v", envAuth, err)
	}
	res, err := Push(context.Background(), Options{
		ImagesDir: dir, Registry: host, Namespace: "kidney-genetics",
		Revision: revision, Version: "v0.0.0-ci", Insecure: true, Auth: envAuth,
		Tested: tested.Images,
	})
	if err != nil {
		t.Fatal(err)
	}
	auth := remote.WithAuth(&authn.Basic{Username: "ci", Password: "not-a-real-secret"})
	for _, p := range res.Images {
		if p.Digest != local[p.Name] {
			t.Errorf("%s: pushed digest %s, local tarball %s", p.Name, p.Digest, local[p.Name])
		}
		// The proof publish.md shows: the registry's digest is the tested one.
		if p.TestedDigest == "" || p.TestedDigest != p.Digest {
			t.Errorf("%s: tested digest %q, pushed %s", p.Name, p.TestedDigest, p.Digest)
		}
		ref, err := name.ParseReference(p.Pinned, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(ref, auth)
		if err != nil {
			t.Fatalf("pull %s: %v", p.Pinned, err)
		}
		d, _ := got.Digest()
		cfg, err := got.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if d.String() != local[p.Name] {
			t.Errorf("pull %s: digest %s, want %s", p.Pinned, d, local[p.Name])
		}
		want := map[string]string{"backend": "1000:1000", "frontend": "101:101"}[p.Name]
		if cfg.Config.User != want {
			t.Errorf("pull %s: user %q, want %q", p.Pinned, cfg.Config.User, want)
		}
	}
}
