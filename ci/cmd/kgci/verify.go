package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kidney-genetics/kidney-genetics-db/ci/sign"
)

const verifySummary = "Verify the signatures `kgci publish --sign-key` pushed for image digests"

func init() {
	register(command{
		name:    "verify",
		summary: verifySummary,
		run: func(ctx context.Context, args []string) error {
			return runVerify(ctx, args, os.Stdout)
		},
	})
}

func runVerify(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("verify", verifySummary+`.

Arguments are pinned references (publish.md lists them):
  kgci verify --key cosign.pub ghcr.io/kidney-genetics/kidney_genetics_backend@sha256:...
Exits non-zero unless every one holds a signature by the key over a payload
naming that digest and repository. The format is cosign's: `+"`cosign verify --key KEY --insecure-ignore-tlog REF`"+`
checks the same.`)
	key := fs.String("key", "", "PEM public key of the signing key")
	insecure := fs.Bool("insecure", false, "plain HTTP: for a local test registry only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *key == "" || fs.NArg() == 0 {
		return fmt.Errorf("give --key PUBLIC.pem and at least one REPOSITORY@sha256:DIGEST")
	}
	v, err := sign.LoadPublicKey(*key)
	if err != nil {
		return err
	}
	var opts []name.Option
	if *insecure {
		opts = append(opts, name.Insecure)
	}
	failed := 0
	for _, a := range fs.Args() {
		d, err := name.NewDigest(a, opts...)
		if err != nil {
			return fmt.Errorf("%s: not a pinned reference (REPOSITORY@sha256:DIGEST): %w", a, err)
		}
		n, err := sign.Verify(ctx, d, v, remote.WithAuthFromKeychain(authn.DefaultKeychain))
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %v\n", a, err)
			continue
		}
		fmt.Fprintf(stdout, "ok   %s: %d signature(s) verified\n", a, n)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d reference(s) not verified", failed, fs.NArg())
	}
	return nil
}
