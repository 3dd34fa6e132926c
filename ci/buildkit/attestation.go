package buildkit

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ociAttestation returns the in-toto statement whose predicate type starts with
// predicatePrefix from an OCI archive BuildKit exported with attestations: index.json ->
// the image index -> the manifest annotated as an attestation manifest -> its layer.
func ociAttestation(path, predicatePrefix string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Manifests, indexes and statements are small; layers are skipped unread.
	small := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if h.Typeflag != tar.TypeReg || h.Size > 4<<20 {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		small[strings.TrimPrefix(h.Name, "blobs/sha256/")] = b
	}
	blob := func(d string) ([]byte, error) {
		b, ok := small[strings.TrimPrefix(d, "sha256:")]
		if !ok {
			return nil, fmt.Errorf("%s: no blob %s", path, d)
		}
		return b, nil
	}
	var queue []ocispec.Descriptor
	var idx ocispec.Index
	if err := json.Unmarshal(small["index.json"], &idx); err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", path, err)
	}
	queue = append(queue, idx.Manifests...)
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		b, err := blob(d.Digest.String())
		if err != nil {
			return nil, err
		}
		switch d.MediaType {
		case ocispec.MediaTypeImageIndex:
			var sub ocispec.Index
			if err := json.Unmarshal(b, &sub); err != nil {
				return nil, err
			}
			queue = append(queue, sub.Manifests...)
		case ocispec.MediaTypeImageManifest:
			if d.Annotations["vnd.docker.reference.type"] != "attestation-manifest" {
				continue
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(b, &m); err != nil {
				return nil, err
			}
			for _, l := range m.Layers {
				if strings.HasPrefix(l.Annotations["in-toto.io/predicate-type"], predicatePrefix) {
					return blob(l.Digest.String())
				}
			}
		}
	}
	return nil, fmt.Errorf("%s: no attestation with a predicate type %s*", path, predicatePrefix)
}
