package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/kidney-genetics/kidney-genetics-db/ci/attest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/checks"
	"github.com/kidney-genetics/kidney-genetics-db/ci/publish"
	"github.com/kidney-genetics/kidney-genetics-db/ci/report"
	"github.com/kidney-genetics/kidney-genetics-db/ci/sign"
)

// envSignKey names the signing key file when --sign-key is not given.
const envSignKey = "KGCI_SIGN_KEY"

const publishSummary = "Push the built images (results/images/*.tar) to an OCI registry, tagged by version and revision"

func init() {
	register(command{
		name:    "publish",
		summary: publishSummary,
		run: func(ctx context.Context, args []string) error {
			return runPublish(ctx, args, os.Stdout, os.Getenv)
		},
	})
}

func runPublish(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	fs := newFlags("publish", publishSummary+".\n\nCredentials come from "+publish.EnvUsername+" and "+publish.EnvPassword+
		",\nor, when both are unset, from the docker config (docker login).")
	images := fs.String("images", "results/images", "directory holding backend.tar and frontend.tar from `kgci build`")
	results := fs.String("results", "results", "directory for publish.json and publish.md")
	registry := fs.String("registry", "ghcr.io", "registry host[:port]")
	namespace := fs.String("namespace", "kidney-genetics", "repository path under the registry (e.g. your GitHub user or org, lower case)")
	prefix := fs.String("prefix", publish.DefaultPrefix, "repository name prefix: <registry>/<namespace>/<prefix>backend")
	revision := fs.String("revision", "", "git commit the images were built from (default: the images' revision label, else git rev-parse HEAD)")
	version := fs.String("version", "", "release version to tag, e.g. v1.2.3 or refs/tags/v1.2.3 (tagged 1.2.3)")
	latest := fs.Bool("latest", false, "move 'latest' even when --version is not the newest release in the registry (the newest release moves it anyway)")
	insecure := fs.Bool("insecure", false, "plain HTTP: for a local test registry only")
	tested := fs.String("tested", "", "results directory of the end-to-end run that tested these tarballs (default: --results); the push is refused unless that run passed and tested exactly these images")
	untested := fs.Bool("untested", false, "push without proof that these tarballs passed `kgci test-e2e --images`")
	builder := fs.String("builder-id", "", "provenance: who ran this build, e.g. the CI run's URL (default: $GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID when set, else kgci's)")
	noAttest := fs.Bool("no-attest", false, "attach no provenance or SBOM statements to the pushed images")
	signKey := fs.String("sign-key", "", "PEM private key (unencrypted; ECDSA P-256, RSA or Ed25519): sign every pushed digest in cosign's format and verify the signature ($"+envSignKey+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	auth, err := publish.AuthFromEnv(getenv)
	if err != nil {
		return err
	}
	if *signKey == "" {
		*signKey = getenv(envSignKey)
	}
	var signer signature.SignerVerifier
	if *signKey != "" {
		// Read before anything is pushed: a bad key must not leave unsigned images behind.
		if signer, err = sign.LoadPrivateKey(*signKey); err != nil {
			return err
		}
	}
	var testedImages []report.Image
	var sum *report.Summary
	testedDir := ""
	if !*untested {
		dir := *tested
		if dir == "" {
			dir = *results
		}
		testedDir = dir
		sum, err = report.ReadSummary(dir)
		if err != nil {
			return fmt.Errorf("no end-to-end results to prove these images were tested (%v): run `kgci test-e2e --images %s --results %s` first, or pass --untested", err, *images, dir)
		}
		if !sum.Passed {
			return fmt.Errorf("the end-to-end run in %s failed (see its summary.md): not publishing", dir)
		}
		testedImages = sum.Images
	}
	rev := *revision
	if rev == "" {
		if rev, err = defaultRevision(ctx, filepath.Join(*images, publish.ImageNames[0]+".tar")); err != nil {
			return err
		}
	}
	var att *publish.Attest
	if !*noAttest {
		att = &publish.Attest{Build: attest.Build{Revision: rev, Version: *version, Builder: *builder, Finished: time.Now()}, ImagesDir: *images}
		if att.Build.Builder == "" && getenv("GITHUB_RUN_ID") != "" {
			att.Build.Builder = getenv("GITHUB_SERVER_URL") + "/" + getenv("GITHUB_REPOSITORY") + "/actions/runs/" + getenv("GITHUB_RUN_ID")
		}
		if sum != nil {
			att.Build.Profile, att.Build.TestRunID, att.Build.ChecksPassed, att.Build.Started = sum.Profile, sum.RunID, sum.ChecksPassed(), sum.Started
			att.SBOMDir = filepath.Join(testedDir, checks.SBOMDir)
		}
	}
	res, err := publish.Push(ctx, publish.Options{
		ImagesDir: *images, Registry: *registry, Namespace: *namespace, Prefix: *prefix,
		Revision: rev, Version: *version, Latest: *latest, Insecure: *insecure, Auth: auth,
		Tested: testedImages, Signer: signer, Attest: att,
	})
	if err != nil {
		return err
	}
	if sum != nil {
		if err := updateSummary(testedDir, sum, res); err != nil {
			return fmt.Errorf("updating %s: %w", filepath.Join(testedDir, report.MarkdownFile), err)
		}
	}
	if err := publish.WriteResults(*results, res); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	for _, p := range res.Images {
		tested := "untested"
		if p.TestedDigest != "" {
			tested = "tested digest, equal"
		}
		if p.Signature != "" {
			tested += "; signed, verified: " + p.Signature
		}
		fmt.Fprintf(stdout, "%-8s %s (tags: %s; %s)\n", p.Name, p.Pinned, strings.Join(res.Tags, ", "), tested)
	}
	fmt.Fprintf(stdout, "wrote %s and %s\n", filepath.Join(*results, "publish.json"), filepath.Join(*results, "publish.md"))
	return nil
}

// defaultRevision prefers what the build recorded in the image over the
// current checkout, which may have moved on since the build.
func defaultRevision(ctx context.Context, tar string) (string, error) {
	rev, err := publish.ImageRevision(tar)
	if err != nil {
		return "", err
	}
	if rev != "" {
		return rev, nil
	}
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "", fmt.Errorf("the images carry no revision label and `git rev-parse HEAD` failed (%v): pass --revision", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// updateSummary fills in the provenance and signature columns of the tested run's
// summary.md, now that they exist.
func updateSummary(dir string, sum *report.Summary, res *publish.Result) error {
	p := filepath.Join(dir, report.MarkdownFile)
	md, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	images := append([]report.Image(nil), sum.Images...)
	for i := range images {
		for _, x := range res.Images {
			if x.Name != images[i].Service {
				continue
			}
			images[i].Provenance = publish.AttestationsLine(x.Attestations)
			images[i].Signature = "not signed (the workflow signs keyless after the push)"
			if x.Signature != "" {
				images[i].Signature = "verified, `" + x.Signature + "`"
			}
		}
	}
	return os.WriteFile(p, report.ReplaceSupplyChain(md, images), 0o644)
}
