// Package attest writes in-toto statements about a pushed image (its SLSA provenance and
// its SBOM) and attaches them to it in the registry as OCI 1.1 referrers: artifacts whose
// subject is the image's digest. The image itself is not touched, so the tested digest
// stays the pushed one, and a registry without the referrers API gets the fallback tag
// (sha256-<hex>) that go-containerregistry maintains.
//
// The statements are kgci's own, written from what the pipeline knows at publish time
// (source revision, profile, the end-to-end run that passed), and the same on both
// engines, because both publish with `kgci publish`. They are not BuildKit's attestations:
// those come out of an image or OCI exporter, not the docker-archive we test and push.
package attest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	// StatementMediaType is the layer (and artifact) type of an attached statement.
	StatementMediaType = "application/vnd.in-toto+json"
	// PredicateAnnotation names the statement's predicate type on the artifact's layer and
	// manifest, so a client can pick one from the referrers list without fetching all.
	PredicateAnnotation = "in-toto.io/predicate-type"

	PredicateSLSA = "https://slsa.dev/provenance/v1"
	PredicateSPDX = "https://spdx.dev/Document"

	// BuildType says how to read the provenance's parameters.
	BuildType = "https://github.com/kidney-genetics/kidney-genetics-db/blob/main/docs/supply-chain.md#provenance"
	// BuilderID is the trusted builder: kgci, driven by a CI workflow (Builder.ID may
	// name the workflow run instead).
	BuilderID = "https://github.com/kidney-genetics/kidney-genetics-db/tree/main/ci/cmd/kgci"
	// SourceRepository is where the revision lives.
	SourceRepository = "https://github.com/kidney-genetics/kidney-genetics-db"
)

// Build is what the provenance records of one publish.
type Build struct {
	Revision string // full git commit
	Version  string // release version, may be empty
	Profile  string // offline or upstream
	// Builder identifies who ran kgci (e.g. a GitHub workflow run's URL); empty means
	// BuilderID.
	Builder string
	// TestRunID and ChecksPassed describe the end-to-end run that passed on these exact
	// images; empty when publishing untested (kgci publish --untested).
	TestRunID    string
	ChecksPassed int
	Started      time.Time
	Finished     time.Time
}

// Provenance is the SLSA v1 provenance statement of the image repo@digest.
func Provenance(repo string, digest v1.Hash, b Build) ([]byte, error) {
	ext, err := structpb.NewStruct(map[string]any{
		"source":   SourceRepository,
		"revision": b.Revision,
		"version":  b.Version,
		"profile":  b.Profile,
	})
	if err != nil {
		return nil, err
	}
	internal, err := structpb.NewStruct(map[string]any{
		"test_run_id":   b.TestRunID,
		"checks_passed": b.ChecksPassed,
	})
	if err != nil {
		return nil, err
	}
	builder := b.Builder
	if builder == "" {
		builder = BuilderID
	}
	meta := &slsa.BuildMetadata{InvocationId: b.TestRunID}
	if !b.Started.IsZero() {
		meta.StartedOn = timestamppb.New(b.Started)
	}
	if !b.Finished.IsZero() {
		meta.FinishedOn = timestamppb.New(b.Finished)
	}
	pred := &slsa.Provenance{
		BuildDefinition: &slsa.BuildDefinition{
			BuildType:          BuildType,
			ExternalParameters: ext,
			InternalParameters: internal,
			ResolvedDependencies: []*intoto.ResourceDescriptor{{
				Uri:    "git+" + SourceRepository + "@" + b.Revision,
				Digest: map[string]string{"gitCommit": b.Revision},
			}},
		},
		RunDetails: &slsa.RunDetails{Builder: &slsa.Builder{Id: builder}, Metadata: meta},
	}
	return statement(repo, digest, PredicateSLSA, pred)
}

// SBOM is a statement whose predicate is the image's SPDX document.
func SBOM(repo string, digest v1.Hash, spdx []byte) ([]byte, error) {
	var doc structpb.Struct
	if err := protojson.Unmarshal(spdx, &doc); err != nil {
		return nil, fmt.Errorf("the SPDX document is not a JSON object: %w", err)
	}
	return statement(repo, digest, PredicateSPDX, &doc)
}

func statement(repo string, digest v1.Hash, predicateType string, predicate proto.Message) ([]byte, error) {
	pred, ok := predicate.(*structpb.Struct)
	if !ok {
		b, err := protojson.Marshal(predicate)
		if err != nil {
			return nil, err
		}
		pred = &structpb.Struct{}
		if err := protojson.Unmarshal(b, pred); err != nil {
			return nil, err
		}
	}
	st := &intoto.Statement{
		Type:          intoto.StatementTypeUri,
		Subject:       []*intoto.ResourceDescriptor{{Name: repo, Digest: map[string]string{digest.Algorithm: digest.Hex}}},
		PredicateType: predicateType,
		Predicate:     pred,
	}
	if err := st.Validate(); err != nil {
		return nil, err
	}
	return protojson.Marshal(st)
}

// BuildKitSuffix names BuildKit's provenance statement beside an image's tarball
// (kgci build --provenance writes <name>.provenance.json).
const BuildKitSuffix = ".provenance.json"

// FromBuildKit points BuildKit's own provenance statement at the pushed digest. BuildKit
// states it of the OCI manifest it exported; the push re-encodes the docker-archive we
// tested, so the bytes a client pulls have another digest. The predicate is BuildKit's,
// untouched; BuildKit's subject is kept as an annotation of the new one.
func FromBuildKit(stmt []byte, repo string, digest v1.Hash) ([]byte, error) {
	var st intoto.Statement
	if err := protojson.Unmarshal(stmt, &st); err != nil {
		return nil, fmt.Errorf("BuildKit's provenance: %w", err)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("BuildKit's provenance: %w", err)
	}
	if st.GetPredicateType() != PredicateSLSA {
		return nil, fmt.Errorf("BuildKit's provenance has predicate type %q, want %s", st.GetPredicateType(), PredicateSLSA)
	}
	var was []any
	for _, s := range st.GetSubject() {
		for alg, hex := range s.GetDigest() {
			was = append(was, s.GetName()+"@"+alg+":"+hex)
		}
	}
	ann, err := structpb.NewStruct(map[string]any{"buildkit_subject": was})
	if err != nil {
		return nil, err
	}
	st.Subject = []*intoto.ResourceDescriptor{{Name: repo, Digest: map[string]string{digest.Algorithm: digest.Hex}, Annotations: ann}}
	return protojson.Marshal(&st)
}

// Attach pushes the statement as an artifact referring to subject and returns the
// artifact's digest.
func Attach(ctx context.Context, subject name.Digest, stmt []byte, predicateType string, opts ...remote.Option) (v1.Hash, error) {
	desc, err := remote.Head(subject, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("attest %s: %w", subject, err)
	}
	ann := map[string]string{PredicateAnnotation: predicateType}
	layer := static.NewLayer(stmt, StatementMediaType)
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, Annotations: ann})
	if err != nil {
		return v1.Hash{}, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	// OCI 1.1: with no artifactType, a client takes the config's media type as the
	// artifact's type; the empty config is `{}`.
	img = mutate.ConfigMediaType(img, StatementMediaType)
	art := mutate.Subject(mutate.Annotations(img, ann).(v1.Image), v1.Descriptor{
		MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size,
	}).(v1.Image)
	d, err := art.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Write(subject.Context().Digest(d.String()), art, append(opts, remote.WithContext(ctx))...); err != nil {
		return v1.Hash{}, fmt.Errorf("attest %s: %w", subject, err)
	}
	return d, nil
}

// Found is one statement attached to an image.
type Found struct {
	PredicateType string
	Digest        v1.Hash // of the artifact
	Statement     []byte
}

// List reads the statements attached to subject, keeping only those whose own subject
// is that digest (an artifact listed for one image cannot vouch for another).
func List(ctx context.Context, subject name.Digest, opts ...remote.Option) ([]Found, error) {
	opts = append(opts, remote.WithContext(ctx))
	idx, err := remote.Referrers(subject, opts...)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", subject, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	want, err := v1.NewHash(subject.DigestStr())
	if err != nil {
		return nil, err
	}
	var out []Found
	for _, m := range im.Manifests {
		if m.ArtifactType != StatementMediaType {
			continue
		}
		img, err := remote.Image(subject.Context().Digest(m.Digest.String()), opts...)
		if err != nil {
			return nil, err
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			return nil, fmt.Errorf("attestation %s: want one layer (%v)", m.Digest, err)
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		var st struct {
			Subject []struct {
				Digest map[string]string `json:"digest"`
			} `json:"subject"`
			PredicateType string `json:"predicateType"`
		}
		if err := json.NewDecoder(bytes.NewReader(b)).Decode(&st); err != nil {
			return nil, fmt.Errorf("attestation %s: %w", m.Digest, err)
		}
		if len(st.Subject) != 1 || st.Subject[0].Digest[want.Algorithm] != want.Hex {
			continue
		}
		out = append(out, Found{PredicateType: st.PredicateType, Digest: m.Digest, Statement: b})
	}
	return out, nil
}
