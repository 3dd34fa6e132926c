package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kidney-genetics/kidney-genetics-db/ci/publish/publishtest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/report"
)

const testRevision = "0123456789abcdef0123456789abcdef01234567"

func TestPushThenPullBackByTagAndDigest(t *testing.T) {
	dir := t.TempDir()
	local := publishtest.WriteArchives(t, dir, testRevision, ImageNames...)
	host, _ := publishtest.StartRegistry(t, "", "")

	res, err := Push(context.Background(), Options{
		ImagesDir: dir, Registry: host, Namespace: "kidney-genetics",
		Revision: testRevision, Version: "refs/tags/v1.2.3", Latest: true, Insecure: true,
		Keychain: authn.NewMultiKeychain(), // anonymous: no docker config of this machine leaks in
	})
	if err != nil {
		t.Fatal(err)
	}
	wantTags := []string{"1.2.3", "1.2", "1", "0123456789ab", "latest"}
	if !reflect.DeepEqual(res.Tags, wantTags) {
		t.Fatalf("tags = %v, want %v", res.Tags, wantTags)
	}
	if len(res.Images) != 2 {
		t.Fatalf("pushed %d images, want 2", len(res.Images))
	}
	for _, p := range res.Images {
		wantRepo := host + "/kidney-genetics/kidney_genetics_" + p.Name
		if p.Repository != wantRepo {
			t.Errorf("repository = %s, want %s", p.Repository, wantRepo)
		}
		want, _ := local[p.Name].Digest()
		if p.Digest != want.String() || p.Pinned != wantRepo+"@"+want.String() {
			t.Errorf("%s: digest %s pinned %s, want %s", p.Name, p.Digest, p.Pinned, want)
		}
		wantCfg, _ := local[p.Name].ConfigFile()

		refs := []string{p.Pinned}
		for _, tr := range p.Tags {
			refs = append(refs, tr.Ref, tr.Pinned)
		}
		for _, r := range refs {
			ref, err := name.ParseReference(r, name.Insecure)
			if err != nil {
				t.Fatalf("%s: %v", r, err)
			}
			got, err := remote.Image(ref)
			if err != nil {
				t.Fatalf("pull %s: %v", r, err)
			}
			d, _ := got.Digest()
			if d.String() != p.Digest {
				t.Errorf("pull %s: digest %s, want %s", r, d, p.Digest)
			}
			cfg, err := got.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Config, wantCfg.Config) {
				t.Errorf("pull %s: config %+v, want %+v", r, cfg.Config, wantCfg.Config)
			}
		}
	}

	out := t.TempDir()
	if err := WriteResults(out, res); err != nil {
		t.Fatal(err)
	}
	var back Result
	b, _ := os.ReadFile(filepath.Join(out, "publish.json"))
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, res) {
		t.Errorf("publish.json round trip differs:\n%+v\n%+v", back, *res)
	}
	md, _ := os.ReadFile(filepath.Join(out, "publish.md"))
	for _, p := range res.Images {
		if !strings.Contains(string(md), p.Pinned) {
			t.Errorf("publish.md lacks %s:\n%s", p.Pinned, md)
		}
		for _, tr := range p.Tags {
			if !strings.Contains(string(md), tr.Pinned) {
				t.Errorf("publish.md lacks %s", tr.Pinned)
			}
		}
	}
}

func TestPushWithBasicAuth(t *testing.T) {
	const user, pass = "ci-bot", "s3cr3t-Pa55word-never-shown"
	dir := t.TempDir()
	publishtest.WriteArchives(t, dir, testRevision, ImageNames...)
	host, _ := publishtest.StartRegistry(t, user, pass)
	env := map[string]string{EnvUsername: user, EnvPassword: pass}
	auth, err := AuthFromEnv(func(k string) string { return env[k] })
	if err != nil || auth == nil {
		t.Fatalf("AuthFromEnv = %v, %v", auth, err)
	}
	res, err := Push(context.Background(), Options{ImagesDir: dir, Registry: host, Revision: testRevision, Insecure: true, Auth: auth})
	if err != nil {
		t.Fatal(err)
	}

	// The registry really enforces credentials: anonymous pulls fail,
	// authenticated ones return what was pushed.
	ref, _ := name.ParseReference(res.Images[0].Pinned, name.Insecure)
	if _, err := remote.Image(ref); err == nil {
		t.Fatal("anonymous pull succeeded: the test registry does not enforce auth")
	}
	img, err := remote.Image(ref, remote.WithAuth(auth))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != res.Images[0].Digest {
		t.Errorf("digest %s, want %s", d, res.Images[0].Digest)
	}

	bad := authn.FromConfig(authn.AuthConfig{Username: user, Password: "wrong-" + pass})
	_, err = Push(context.Background(), Options{ImagesDir: dir, Registry: host, Revision: testRevision, Insecure: true, Auth: bad})
	if err == nil {
		t.Fatal("push with a wrong password succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"rejected the credentials", host, EnvUsername, EnvPassword, "docker login"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, pass) {
		t.Errorf("error shows the password: %q", msg)
	}
}

func TestUnreachableRegistryNamesHostAndFix(t *testing.T) {
	dir := t.TempDir()
	publishtest.WriteArchives(t, dir, testRevision, ImageNames...)
	// A port that was just free: nothing listens there now.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err = Push(ctx, Options{ImagesDir: dir, Registry: host, Revision: testRevision, Insecure: true, Keychain: authn.NewMultiKeychain()})
	if err == nil {
		t.Fatal("push to a closed port succeeded")
	}
	for _, want := range []string{"cannot reach registry " + host, "--registry", "running"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	t.Logf("failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

func TestRevisionMismatchPushesNothing(t *testing.T) {
	dir := t.TempDir()
	publishtest.WriteArchives(t, dir, testRevision, ImageNames...)
	host, requests := publishtest.StartRegistry(t, "", "")
	other := "fedcba9876543210fedcba9876543210fedcba98"
	_, err := Push(context.Background(), Options{ImagesDir: dir, Registry: host, Revision: other, Insecure: true})
	if err == nil || !strings.Contains(err.Error(), "built from revision "+testRevision) {
		t.Fatalf("err = %v, want a revision mismatch", err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("registry got %d requests; a refused push must not touch it", n)
	}
}

func TestMissingTarballPushesNothing(t *testing.T) {
	dir := t.TempDir()
	publishtest.WriteArchives(t, dir, testRevision, ImageNames...)
	if err := os.Remove(filepath.Join(dir, "frontend.tar")); err != nil {
		t.Fatal(err)
	}
	host, requests := publishtest.StartRegistry(t, "", "")
	_, err := Push(context.Background(), Options{ImagesDir: dir, Registry: host, Revision: testRevision, Insecure: true})
	if err == nil || !strings.Contains(err.Error(), "frontend.tar") || !strings.Contains(err.Error(), "kgci build") {
		t.Fatalf("err = %v, want one naming frontend.tar and kgci build", err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("registry got %d requests before the missing frontend was noticed", n)
	}
}

func TestTags(t *testing.T) {
	released := []string{"1.2.3", "1.2", "1", "latest", "0123456789ab", "1.3.0-rc.1", "nightly"}
	for _, c := range []struct {
		rev, version string
		latest       bool
		existing     []string
		want         []string
		wantErr      string
	}{
		{rev: testRevision, want: []string{"0123456789ab"}},
		// A pre-release gets its own tag only, never a moving one.
		{rev: "ABCDEF1", version: "v2.0.0-rc.1", want: []string{"2.0.0-rc.1", "abcdef1"}},
		{rev: "ABCDEF1", version: "v2.0.0-rc.1", existing: released, want: []string{"2.0.0-rc.1", "abcdef1"}},
		// The first release: X.Y.Z, X.Y, X and latest, as docker/metadata-action's semver patterns.
		{rev: testRevision, version: "refs/tags/v1.2.3", want: []string{"1.2.3", "1.2", "1", "0123456789ab", "latest"}},
		{rev: testRevision, version: "v1.3.0", existing: released, want: []string{"1.3.0", "1.3", "1", "0123456789ab", "latest"}},
		// A fix to an older line moves that line's tag only.
		{rev: testRevision, version: "v1.2.4", existing: append(released, "1.3.0"), want: []string{"1.2.4", "1.2", "0123456789ab"}},
		{rev: testRevision, version: "v0.9.9", existing: released, want: []string{"0.9.9", "0.9", "0", "0123456789ab"}},
		// --latest forces it; republishing the newest release keeps everything.
		{rev: testRevision, version: "v0.9.9", latest: true, existing: released, want: []string{"0.9.9", "0.9", "0", "0123456789ab", "latest"}},
		{rev: testRevision, version: "v1.2.3", existing: released, want: []string{"1.2.3", "1.2", "1", "0123456789ab", "latest"}},
		// A pre-release of a newer version does not hold back the release before it.
		{rev: testRevision, version: "v1.2.5", existing: []string{"2.0.0-rc.1"}, want: []string{"1.2.5", "1.2", "1", "0123456789ab", "latest"}},
		{rev: testRevision, version: "nightly", existing: released, want: []string{"nightly", "0123456789ab"}},
		{rev: testRevision, version: "v1.2", want: []string{"1.2", "0123456789ab"}},
		{rev: "", wantErr: "not a git commit"},
		{rev: "main", wantErr: "not a git commit"},
		{rev: testRevision, version: "v1/2", wantErr: "valid image tag"},
	} {
		got, err := Tags(c.rev, c.version, c.latest, c.existing)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("Tags(%q,%q) err = %v, want %q", c.rev, c.version, err, c.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Tags(%q,%q,%v,%v) = %v, %v; want %v", c.rev, c.version, c.latest, c.existing, got, err, c.want)
		}
	}
}

func TestAuthFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if a, err := AuthFromEnv(env(nil)); a != nil || err != nil {
		t.Errorf("no variables: %v, %v; want keychain fallback", a, err)
	}
	_, err := AuthFromEnv(env(map[string]string{EnvPassword: "hunter2-secret"}))
	if err == nil || !strings.Contains(err.Error(), EnvUsername) || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("password only: %v", err)
	}
	if _, err := AuthFromEnv(env(map[string]string{EnvUsername: "bot"})); err == nil || !strings.Contains(err.Error(), EnvPassword) {
		t.Errorf("username only: %v", err)
	}
}

func TestRepository(t *testing.T) {
	for _, c := range [][5]string{
		{"ghcr.io", "kidney-genetics", "", "backend", "ghcr.io/kidney-genetics/kidney_genetics_backend"},
		{"localhost:5000", "", "", "frontend", "localhost:5000/kidney_genetics_frontend"},
		{"reg.example/", "/a/b/", "kg-", "backend", "reg.example/a/b/kg-backend"},
	} {
		if got := Repository(c[0], c[1], c[2], c[3]); got != c[4] {
			t.Errorf("Repository%v = %s, want %s", c[:4], got, c[4])
		}
	}
}

// A push names the tested digests next to the pushed ones, and refuses a tarball that
// is not the one the end-to-end run tested, before anything is uploaded.
func TestPushRequiresTheTestedImages(t *testing.T) {
	dir := t.TempDir()
	local := writeArchives(t, dir)
	tested := []report.Image{}
	for _, n := range ImageNames {
		d, _ := local[n].Digest()
		tested = append(tested, report.Image{Service: n, Digest: d.String()})
	}
	host, requests := publishtest.StartRegistry(t, "", "")
	opts := Options{ImagesDir: dir, Registry: host, Revision: testRevision, Insecure: true, Keychain: authn.NewMultiKeychain(), Tested: tested}
	res, err := Push(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range res.Images {
		if p.TestedDigest != tested[i].Digest || p.Digest != p.TestedDigest {
			t.Errorf("%s: tested %s pushed %s, want both %s", p.Name, p.TestedDigest, p.Digest, tested[i].Digest)
		}
	}

	before := requests.Load()
	for _, tc := range []struct {
		name   string
		tested []report.Image
		want   string
	}{
		{"other bytes", []report.Image{{Service: "backend", Digest: "sha256:" + strings.Repeat("0", 64)}, tested[1]}, "the end-to-end checks ran against sha256:000"},
		{"frontend untested", tested[:1], "no tested frontend image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			o.Tested = tc.tested
			if _, err := Push(context.Background(), o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if n := requests.Load() - before; n != 0 {
		t.Errorf("refused pushes still sent %d requests", n)
	}
	md := Markdown(res)
	if !strings.Contains(md, "✅ equal") || !strings.Contains(md, res.Images[0].Digest) {
		t.Errorf("publish.md does not show tested = pushed:\n%s", md)
	}
}

func writeArchives(t *testing.T, dir string) map[string]v1.Image {
	return publishtest.WriteArchives(t, dir, testRevision, ImageNames...)
}

// A release history pushed to one registry: what each moving tag names after
// 1.2.3, 1.3.0-rc.1, 1.3.0 and then the fix 1.2.4 of the older line.
func TestMovingTagsFollowTheNewestRelease(t *testing.T) {
	host, _ := publishtest.StartRegistry(t, "", "")
	digests := map[string]string{}
	for i, version := range []string{"v1.2.3", "v1.3.0-rc.1", "v1.3.0", "v1.2.4"} {
		dir := t.TempDir()
		rev := fmt.Sprintf("%040x", i+1)
		publishtest.WriteArchives(t, dir, rev, ImageNames...)
		res, err := Push(context.Background(), Options{
			ImagesDir: dir, Registry: host, Namespace: "kg", Revision: rev, Version: version, Insecure: true,
			Keychain: authn.NewMultiKeychain(),
		})
		if err != nil {
			t.Fatalf("%s: %v", version, err)
		}
		for _, p := range res.Images {
			if p.Name == "backend" {
				digests[version] = p.Digest
			}
		}
	}
	seen := map[string]bool{}
	for _, d := range digests {
		seen[d] = true
	}
	if len(seen) != 4 {
		t.Fatalf("the four releases must be four images: %v", digests)
	}
	for tag, version := range map[string]string{"latest": "v1.3.0", "1": "v1.3.0", "1.3": "v1.3.0", "1.2": "v1.2.4", "1.2.3": "v1.2.3", "1.3.0-rc.1": "v1.3.0-rc.1"} {
		ref, err := name.ParseReference(host+"/kg/kidney_genetics_backend:"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(ref)
		if err != nil {
			t.Fatalf("%s: %v", tag, err)
		}
		if desc.Digest.String() != digests[version] {
			t.Errorf("tag %s names %s, want the image of %s (%s)", tag, desc.Digest, version, digests[version])
		}
	}
}
