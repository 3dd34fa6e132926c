// Package sign signs published image digests and verifies the signatures,
// in cosign's registry format: a simple-signing payload naming the digest,
// signed with a key, stored as a layer of the image tagged
// sha256-<hex>.sig in the same repository. `cosign verify --key` reads
// these (with --insecure-ignore-tlog: nothing is uploaded to Rekor).
package sign

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

const (
	// SignatureAnnotation carries the base64 signature on the payload's layer.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	// PayloadMediaType is the layer type of a simple-signing payload.
	PayloadMediaType types.MediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
)

// SignatureTag is where cosign keeps the signatures of d.
// It keeps d's registry settings (name.Insecure for a plain-HTTP registry).
func SignatureTag(d name.Digest) (name.Tag, error) {
	if !strings.HasPrefix(d.DigestStr(), "sha256:") {
		return name.Tag{}, fmt.Errorf("%s: only sha256 digests are signed", d)
	}
	return d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig"), nil
}

// LoadPrivateKey reads an unencrypted PEM private key (ECDSA P-256 as
// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes,
// or RSA, Ed25519).
func LoadPrivateKey(path string) (signature.SignerVerifier, error) {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if bytes.Contains(pemBytes, []byte("ENCRYPTED")) {
		return nil, fmt.Errorf("signing key %s is encrypted: give an unencrypted PEM key (e.g. openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem), kept as a CI secret", path)
	}
	k, err := cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, cryptoutils.SkipPassword)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return signature.LoadSignerVerifier(k, crypto.SHA256)
}

// LoadPublicKey reads a PEM public key (cosign.pub, or `openssl pkey -pubout`).
func LoadPublicKey(path string) (signature.Verifier, error) {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	k, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return signature.LoadVerifier(k, crypto.SHA256)
}

// PublicKeyPEM is the verifying half of s, for publish.md and `cosign verify --key`.
func PublicKeyPEM(s signature.SignerVerifier) ([]byte, error) {
	pub, err := s.PublicKey()
	if err != nil {
		return nil, err
	}
	return cryptoutils.MarshalPublicKeyToPEM(pub)
}

// Sign adds a signature of d to its signature image, unless one by the same
// key over the same payload is there already (a rerun signs nothing twice).
func Sign(ctx context.Context, d name.Digest, s signature.SignerVerifier, opts ...remote.Option) (name.Tag, error) {
	tag, err := SignatureTag(d)
	if err != nil {
		return tag, err
	}
	pl, err := payload.Cosign{Image: d}.MarshalJSON()
	if err != nil {
		return tag, err
	}
	opts = append(opts, remote.WithContext(ctx))
	base, err := existing(tag, opts)
	if err != nil {
		return tag, err
	}
	if n, _ := count(base, d, s); n > 0 {
		return tag, nil
	}
	sig, err := s.SignMessage(bytes.NewReader(pl))
	if err != nil {
		return tag, fmt.Errorf("signing %s: %w", d, err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(pl, PayloadMediaType),
		Annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		return tag, err
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		return tag, fmt.Errorf("pushing the signature %s: %w", tag, err)
	}
	return tag, nil
}

// Verify returns how many signatures by v over a payload naming d (digest
// and repository) its signature image holds; none is an error.
func Verify(ctx context.Context, d name.Digest, v signature.Verifier, opts ...remote.Option) (int, error) {
	tag, err := SignatureTag(d)
	if err != nil {
		return 0, err
	}
	img, err := remote.Image(tag, append(opts, remote.WithContext(ctx))...)
	if isNotFound(err) {
		return 0, fmt.Errorf("%s is not signed: no signature image %s", d, tag)
	}
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", tag, err)
	}
	n, reasons := count(img, d, v)
	if n == 0 {
		return 0, fmt.Errorf("none of the %d signature(s) in %s verifies for %s with this key: %s", len(reasons), tag, d, strings.Join(reasons, "; "))
	}
	return n, nil
}

func existing(tag name.Tag, opts []remote.Option) (v1.Image, error) {
	img, err := remote.Image(tag, opts...)
	if isNotFound(err) {
		return mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", tag, err)
	}
	return img, nil
}

// count checks every layer of a signature image: the payload must be the
// one the layer's digest names, name d's digest and repository, and carry a
// signature v accepts.
func count(img v1.Image, d name.Digest, v signature.Verifier) (int, []string) {
	m, err := img.Manifest()
	if err != nil {
		return 0, []string{err.Error()}
	}
	n := 0
	var reasons []string
	for i, l := range m.Layers {
		why := func() string {
			if l.MediaType != PayloadMediaType {
				return fmt.Sprintf("layer %d has media type %s", i, l.MediaType)
			}
			sig, err := base64.StdEncoding.DecodeString(l.Annotations[SignatureAnnotation])
			if err != nil || len(sig) == 0 {
				return fmt.Sprintf("layer %d has no %s annotation", i, SignatureAnnotation)
			}
			layer, err := img.LayerByDigest(l.Digest)
			if err != nil {
				return err.Error()
			}
			rc, err := layer.Compressed()
			if err != nil {
				return err.Error()
			}
			pl, err := io.ReadAll(io.LimitReader(rc, 1<<20))
			rc.Close()
			if err != nil {
				return err.Error()
			}
			if h, _, err := v1.SHA256(bytes.NewReader(pl)); err != nil || h != l.Digest {
				return fmt.Sprintf("layer %d's payload does not match its digest", i)
			}
			if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(pl)); err != nil {
				return fmt.Sprintf("layer %d: signature does not verify with this key", i)
			}
			var sci payload.SimpleContainerImage
			if err := json.Unmarshal(pl, &sci); err != nil {
				return fmt.Sprintf("layer %d: payload is not simple signing JSON: %v", i, err)
			}
			if sci.Critical.Type != payload.CosignSignatureType {
				return fmt.Sprintf("layer %d: payload type %q", i, sci.Critical.Type)
			}
			if sci.Critical.Image.DockerManifestDigest != d.DigestStr() {
				return fmt.Sprintf("layer %d signs %s, not %s", i, sci.Critical.Image.DockerManifestDigest, d.DigestStr())
			}
			if ref := sci.Critical.Identity.DockerReference; ref != d.Context().Name() {
				return fmt.Sprintf("layer %d signs the image as %s, not %s", i, ref, d.Context().Name())
			}
			return ""
		}()
		if why == "" {
			n++
		} else {
			reasons = append(reasons, why)
		}
	}
	return n, reasons
}

func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}
