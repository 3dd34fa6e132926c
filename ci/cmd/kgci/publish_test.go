package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/attest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/checks"
	"github.com/kidney-genetics/kidney-genetics-db/ci/publish"
	"github.com/kidney-genetics/kidney-genetics-db/ci/publish/publishtest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/report"
	"github.com/kidney-genetics/kidney-genetics-db/ci/sign/signtest"
)

// The password must not reach stdout, the error (which main prints to
// stderr) or any results file, on success or on failure.
func TestPublishNeverShowsThePassword(t *testing.T) {
	const user, pass = "kg-bot", "Zx9-very-secret-token-Qw7"
	const rev = "89abcdef0123456789abcdef0123456789abcdef"
	images, results := t.TempDir(), t.TempDir()
	publishtest.WriteArchives(t, images, rev, publish.ImageNames...)
	host, _ := publishtest.StartRegistry(t, user, pass)

	run := func(password string) (string, error) {
		env := map[string]string{publish.EnvUsername: user, publish.EnvPassword: password}
		var out bytes.Buffer
		err := runPublish(context.Background(), []string{
			"--images", images, "--results", results, "--registry", host, "--namespace", "kg",
			"--version", "v0.3.0", "--insecure", "--untested",
		}, &out, func(k string) string { return env[k] })
		return out.String(), err
	}

	out, err := run(pass)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	// Without --revision the images' own label names them.
	if !strings.Contains(out, host+"/kg/kidney_genetics_backend@sha256:") || !strings.Contains(out, "0.3.0, 0.3, 0, 89abcdef0123, latest") {
		t.Errorf("stdout lacks the pinned backend reference or the tags:\n%s", out)
	}
	var res publish.Result
	b, err := os.ReadFile(filepath.Join(results, "publish.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil || res.Revision != rev || len(res.Images) != 2 {
		t.Errorf("publish.json = %+v, %v", res, err)
	}

	_, badErr := run("not-" + pass)
	if badErr == nil || !strings.Contains(badErr.Error(), "rejected the credentials") {
		t.Fatalf("wrong password: err = %v", badErr)
	}

	for what, text := range map[string]string{"stdout": out, "error": badErr.Error()} {
		if strings.Contains(text, pass) {
			t.Errorf("%s shows the password: %s", what, text)
		}
	}
	filepath.WalkDir(results, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(pass)) {
			t.Errorf("%s contains the password", p)
		}
		return nil
	})
}

func TestPublishRefusesHalfSetCredentials(t *testing.T) {
	env := map[string]string{publish.EnvUsername: "bot"}
	err := runPublish(context.Background(), []string{"--images", t.TempDir()}, &bytes.Buffer{}, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), publish.EnvPassword) {
		t.Fatalf("err = %v, want one naming %s", err, publish.EnvPassword)
	}
}

// Without proof of a passing end-to-end run on these very tarballs, nothing is pushed.
func TestPublishNeedsATestedPassingRun(t *testing.T) {
	const rev = "89abcdef0123456789abcdef0123456789abcdef"
	images, results := t.TempDir(), t.TempDir()
	local := publishtest.WriteArchives(t, images, rev, publish.ImageNames...)
	host, requests := publishtest.StartRegistry(t, "", "")
	run := func(extra ...string) (string, error) {
		var out bytes.Buffer
		args := append([]string{"--images", images, "--results", results, "--registry", host, "--namespace", "kg", "--insecure"}, extra...)
		err := runPublish(context.Background(), args, &out, func(string) string { return "" })
		return out.String(), err
	}
	writeRun := func(passed bool, digests map[string]string) {
		t.Helper()
		run := &report.Run{Command: "test-e2e", Profile: "offline", RunID: "r1", Started: time.Now()}
		if !passed {
			run.Results = []checks.Result{{Name: "gzip.static", Group: "gzip", Status: checks.Fail}}
		}
		for _, n := range publish.ImageNames {
			run.Images = append(run.Images, report.Image{Service: n, Ref: "kidney_genetics_" + n + ":latest", ID: "sha256:x", Digest: digests[n]})
		}
		if _, err := report.Write(results, run, nil); err != nil {
			t.Fatal(err)
		}
	}
	digests := map[string]string{}
	for n, img := range local {
		d, _ := img.Digest()
		digests[n] = d.String()
	}

	if _, err := run(); err == nil || !strings.Contains(err.Error(), "no end-to-end results") || !strings.Contains(err.Error(), "--untested") {
		t.Errorf("no results.json: err = %v", err)
	}
	writeRun(false, digests)
	if _, err := run(); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Errorf("failed run: err = %v", err)
	}
	other := map[string]string{"backend": digests["backend"], "frontend": "sha256:" + strings.Repeat("1", 64)}
	writeRun(true, other)
	if _, err := run(); err == nil || !strings.Contains(err.Error(), "frontend: this tarball is") {
		t.Errorf("other frontend tested: err = %v", err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("refused publishes sent %d requests to the registry", n)
	}
	writeRun(true, digests)
	out, err := run()
	if err != nil {
		t.Fatalf("tested run: %v", err)
	}
	if !strings.Contains(out, "tested digest, equal") {
		t.Errorf("stdout does not say the pushed digest is the tested one:\n%s", out)
	}
}

// publish --sign-key signs what it pushed; kgci verify accepts those digests
// with the public key and refuses them with another key.
func TestPublishSignsAndVerifyChecks(t *testing.T) {
	const rev = "fedcba9876543210fedcba9876543210fedcba98"
	images, results := t.TempDir(), t.TempDir()
	publishtest.WriteArchives(t, images, rev, publish.ImageNames...)
	host, _ := publishtest.StartRegistry(t, "", "")
	keys := t.TempDir()
	priv, pub := signtest.WriteKey(t, keys, "release")
	_, otherPub := signtest.WriteKey(t, keys, "other")

	var out bytes.Buffer
	err := runPublish(context.Background(), []string{
		"--images", images, "--results", results, "--registry", host, "--namespace", "kg", "--insecure", "--untested",
	}, &out, func(k string) string { return map[string]string{envSignKey: priv}[k] })
	require.NoError(t, err, out.String())
	var res publish.Result
	b, err := os.ReadFile(filepath.Join(results, "publish.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &res))
	require.Len(t, res.Images, 2)
	var pinned []string
	for _, p := range res.Images {
		assert.Equal(t, p.Repository+":sha256-"+strings.TrimPrefix(p.Digest, "sha256:")+".sig", p.Signature)
		pinned = append(pinned, p.Pinned)
	}
	md, err := os.ReadFile(filepath.Join(results, "publish.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "✅ verified, `"+res.Images[0].Signature+"`")

	out.Reset()
	require.NoError(t, runVerify(context.Background(), append([]string{"--key", pub, "--insecure"}, pinned...), &out), out.String())
	assert.Equal(t, 2, strings.Count(out.String(), "1 signature(s) verified"), out.String())

	out.Reset()
	err = runVerify(context.Background(), append([]string{"--key", otherPub, "--insecure"}, pinned...), &out)
	assert.ErrorContains(t, err, "2 of 2 reference(s) not verified")
	assert.Contains(t, out.String(), "signature does not verify with this key")

	// A bad key is refused before anything is pushed.
	err = runPublish(context.Background(), []string{
		"--images", images, "--results", t.TempDir(), "--registry", host, "--namespace", "kg2", "--insecure", "--untested", "--sign-key", pub,
	}, &out, func(string) string { return "" })
	assert.ErrorContains(t, err, "signing key "+pub)
}

// A tested publish attaches each image's provenance and SBOM as OCI referrers, reads
// them back, records them in publish.json, and fills summary.md's supply-chain columns.
func TestPublishAttachesProvenanceAndSBOM(t *testing.T) {
	const rev = "0123456789abcdef0123456789abcdef01234567"
	images, results := t.TempDir(), t.TempDir()
	local := publishtest.WriteArchives(t, images, rev, publish.ImageNames...)
	host, _ := publishtest.StartRegistry(t, "", "")
	run := &report.Run{Command: "test-e2e", Profile: "offline", RunID: "r42", Started: time.Now(),
		Results: []checks.Result{{Name: "health.frontend", Group: "health", Status: checks.Pass}}}
	for _, n := range publish.ImageNames {
		d, _ := local[n].Digest()
		run.Images = append(run.Images, report.Image{Service: n, Ref: "kidney_genetics_" + n + ":latest", ID: "sha256:x", Digest: d.String(), SBOMPackages: 7})
	}
	_, err := report.Write(results, run, nil)
	require.NoError(t, err)
	// The backend has BuildKit's own provenance (kgci build --provenance) and an SBOM;
	// the frontend gets kgci's provenance alone.
	const bkSubject = "sha256:4f3367e0c9713a9b2d0c9e31fce40ef3b99635c487b353579e245e570d1e9916"
	require.NoError(t, os.WriteFile(filepath.Join(images, "backend"+attest.BuildKitSuffix), []byte(`{"_type":"https://in-toto.io/Statement/v1",`+
		`"subject":[{"name":"pkg:docker/kidney_genetics_backend@latest","digest":{"sha256":"`+strings.TrimPrefix(bkSubject, "sha256:")+`"}}],`+
		`"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"}}}`), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(results, checks.SBOMDir), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(results, checks.SBOMDir, "backend.spdx.json"), []byte(`{"spdxVersion":"SPDX-2.3","name":"backend"}`), 0o644))

	var out bytes.Buffer
	require.NoError(t, runPublish(context.Background(), []string{
		"--images", images, "--results", results, "--registry", host, "--namespace", "kg", "--insecure", "--version", "v1.0.0",
	}, &out, func(string) string { return "" }), out.String())

	var res publish.Result
	b, err := os.ReadFile(filepath.Join(results, "publish.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &res))
	want := map[string][]string{"backend": {"buildkit-provenance", "kgci-provenance", "sbom"}, "frontend": {"kgci-provenance"}}
	for _, p := range res.Images {
		var got []string
		for _, a := range p.Attestations {
			got = append(got, a.Kind)
		}
		assert.Equal(t, want[p.Name], got, p.Name)
		d, err := name.NewDigest(p.Pinned, name.Insecure)
		require.NoError(t, err)
		found, err := attest.List(context.Background(), d)
		require.NoError(t, err)
		require.Len(t, found, len(want[p.Name]), p.Name)
		for _, f := range found {
			if strings.Contains(string(f.Statement), "moby/buildkit") {
				assert.Contains(t, string(f.Statement), `"buildkit_subject":["pkg:docker/kidney_genetics_backend@latest@`+bkSubject+`"]`, "BuildKit's subject kept as an annotation")
				assert.Contains(t, string(f.Statement), strings.TrimPrefix(p.Digest, "sha256:"), "pointed at the pushed digest")
				continue
			}
			if f.PredicateType == attest.PredicateSLSA {
				assert.Contains(t, string(f.Statement), `"invocationId":"r42"`)
				assert.Contains(t, string(f.Statement), `"gitCommit":"`+rev+`"`)
				assert.Contains(t, string(f.Statement), `"version":"v1.0.0"`)
			}
		}
	}
	md, err := os.ReadFile(filepath.Join(results, report.MarkdownFile))
	require.NoError(t, err)
	assert.Regexp(t, "\\| backend \\| 7 packages \\| SLSA provenance v1 \\(BuildKit\\) `sha256:[0-9a-f]{12}`, SLSA provenance v1 \\(kgci\\) `sha256:[0-9a-f]{12}`, SBOM \\(SPDX\\) `sha256:[0-9a-f]{12}` \\(OCI referrers\\) \\| not scanned \\| not signed", string(md))
	assert.NotContains(t, string(md), "at publish")
	pmd, err := os.ReadFile(filepath.Join(results, "publish.md"))
	require.NoError(t, err)
	assert.Contains(t, string(pmd), "SLSA provenance v1")
}
