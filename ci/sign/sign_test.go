package sign

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/publish/publishtest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/sign/signtest"
)

func writeKey(t *testing.T) (priv, pub string) {
	return signtest.WriteKey(t, t.TempDir(), "key")
}

func pushRandom(t *testing.T, repo string, seed int64) name.Digest {
	t.Helper()
	img, err := random.Image(256, 1+seed)
	require.NoError(t, err)
	tag, err := name.NewTag(repo+":v", name.Insecure)
	require.NoError(t, err)
	require.NoError(t, remote.Write(tag, img))
	d, err := img.Digest()
	require.NoError(t, err)
	ref, err := name.NewDigest(repo+"@"+d.String(), name.Insecure)
	require.NoError(t, err)
	return ref
}

func TestSignAndVerifyAgainstARegistry(t *testing.T) {
	ctx := context.Background()
	host, _ := publishtest.StartRegistry(t, "", "")
	repo := host + "/kg/kidney_genetics_backend"
	d := pushRandom(t, repo, 1)
	other := pushRandom(t, repo, 2)

	privPath, pubPath := writeKey(t)
	signer, err := LoadPrivateKey(privPath)
	require.NoError(t, err)
	verifier, err := LoadPublicKey(pubPath)
	require.NoError(t, err)

	_, err = Verify(ctx, d, verifier)
	assert.ErrorContains(t, err, "is not signed: no signature image "+repo+":sha256-")

	tag, err := Sign(ctx, d, signer)
	require.NoError(t, err)
	assert.Equal(t, repo+":"+"sha256-"+d.DigestStr()[len("sha256:"):]+".sig", tag.String())
	n, err := Verify(ctx, d, verifier)
	require.NoError(t, err)
	assert.Equal(t, 1, n)

	// Signing again adds nothing; the other image is not signed by this.
	_, err = Sign(ctx, d, signer)
	require.NoError(t, err)
	sigImg, err := remote.Image(tag)
	require.NoError(t, err)
	m, err := sigImg.Manifest()
	require.NoError(t, err)
	require.Len(t, m.Layers, 1)
	_, err = Verify(ctx, other, verifier)
	assert.ErrorContains(t, err, "is not signed")

	// cosign's payload, field for field (what `cosign verify` parses).
	l, err := sigImg.LayerByDigest(m.Layers[0].Digest)
	require.NoError(t, err)
	rc, err := l.Compressed()
	require.NoError(t, err)
	var pl struct {
		Critical struct {
			Identity struct {
				DockerReference string `json:"docker-reference"`
			} `json:"identity"`
			Image struct {
				DockerManifestDigest string `json:"docker-manifest-digest"`
			} `json:"image"`
			Type string `json:"type"`
		} `json:"critical"`
	}
	require.NoError(t, json.NewDecoder(rc).Decode(&pl))
	rc.Close()
	assert.Equal(t, "cosign container image signature", pl.Critical.Type)
	assert.Equal(t, d.DigestStr(), pl.Critical.Image.DockerManifestDigest)
	assert.Equal(t, repo, pl.Critical.Identity.DockerReference)
	assert.Equal(t, PayloadMediaType, m.Layers[0].MediaType)
	assert.NotEmpty(t, m.Layers[0].Annotations[SignatureAnnotation])

	// Another key does not verify it, and says why.
	_, otherPub := writeKey(t)
	wrong, err := LoadPublicKey(otherPub)
	require.NoError(t, err)
	_, err = Verify(ctx, d, wrong)
	assert.ErrorContains(t, err, "none of the 1 signature(s)")
	assert.ErrorContains(t, err, "signature does not verify with this key")

	// A signature copied onto another digest's tag names the wrong image.
	otherTag, err := SignatureTag(other)
	require.NoError(t, err)
	require.NoError(t, remote.Write(otherTag, sigImg))
	_, err = Verify(ctx, other, verifier)
	assert.ErrorContains(t, err, "signs "+d.DigestStr()+", not "+other.DigestStr())
}

func TestKeyErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadPrivateKey(filepath.Join(dir, "none.pem"))
	assert.ErrorContains(t, err, "signing key: ")
	enc := filepath.Join(dir, "cosign.key")
	require.NoError(t, os.WriteFile(enc, []byte("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAA==\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"), 0o600))
	_, err = LoadPrivateKey(enc)
	assert.ErrorContains(t, err, "is encrypted: give an unencrypted PEM key")
	_, err = LoadPublicKey(enc)
	assert.ErrorContains(t, err, "public key "+enc)
}
