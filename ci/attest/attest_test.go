package attest

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pushImage pushes a random image and returns its pinned reference.
func pushImage(t *testing.T, host, repo string) name.Digest {
	t.Helper()
	img, err := random.Image(512, 1)
	require.NoError(t, err)
	ref, err := name.ParseReference(host+"/"+repo+":t", name.Insecure)
	require.NoError(t, err)
	require.NoError(t, remote.Write(ref, img))
	d, err := img.Digest()
	require.NoError(t, err)
	pinned, err := name.NewDigest(host+"/"+repo+"@"+d.String(), name.Insecure)
	require.NoError(t, err)
	return pinned
}

// Both statements go to the registry and come back, on a registry with the referrers
// API and on one without it (the fallback tag), naming the image's digest.
func TestAttachAndList(t *testing.T) {
	for _, referrers := range []bool{true, false} {
		t.Run(map[bool]string{true: "referrers API", false: "fallback tag"}[referrers], func(t *testing.T) {
			srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(referrers)))
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "http://")
			img := pushImage(t, host, "kg/kidney_genetics_backend")
			other := pushImage(t, host, "kg/kidney_genetics_backend")
			ctx := context.Background()

			h, err := v1.NewHash(img.DigestStr())
			require.NoError(t, err)
			prov, err := Provenance(img.Context().String(), h, Build{
				Revision: "0123456789abcdef0123456789abcdef01234567", Version: "1.2.3", Profile: "offline",
				TestRunID: "run1", ChecksPassed: 27, Started: time.Unix(1700000000, 0), Finished: time.Unix(1700000100, 0),
			})
			require.NoError(t, err)
			sbom, err := SBOM(img.Context().String(), h, []byte(`{"spdxVersion":"SPDX-2.3","packages":[{"name":"fastapi","versionInfo":"0.92.0"}]}`))
			require.NoError(t, err)
			_, err = Attach(ctx, img, prov, PredicateSLSA)
			require.NoError(t, err)
			_, err = Attach(ctx, img, sbom, PredicateSPDX)
			require.NoError(t, err)

			found, err := List(ctx, img)
			require.NoError(t, err)
			types := map[string][]byte{}
			for _, f := range found {
				types[f.PredicateType] = f.Statement
			}
			require.Len(t, types, 2, "%+v", found)
			var st struct {
				Type    string `json:"_type"`
				Subject []struct {
					Name   string
					Digest map[string]string
				}
				Predicate struct {
					BuildDefinition struct {
						BuildType            string
						ExternalParameters   map[string]any
						ResolvedDependencies []struct {
							URI    string `json:"uri"`
							Digest map[string]string
						}
					}
					RunDetails struct {
						Builder struct {
							ID string `json:"id"`
						}
						Metadata struct {
							InvocationID string `json:"invocationId"`
							StartedOn    string
						}
					}
				}
			}
			require.NoError(t, json.Unmarshal(types[PredicateSLSA], &st))
			assert.Equal(t, "https://in-toto.io/Statement/v1", st.Type)
			assert.Equal(t, h.Hex, st.Subject[0].Digest["sha256"])
			assert.Equal(t, BuildType, st.Predicate.BuildDefinition.BuildType)
			assert.Equal(t, "offline", st.Predicate.BuildDefinition.ExternalParameters["profile"])
			assert.Equal(t, "0123456789abcdef0123456789abcdef01234567", st.Predicate.BuildDefinition.ResolvedDependencies[0].Digest["gitCommit"])
			assert.Equal(t, BuilderID, st.Predicate.RunDetails.Builder.ID)
			assert.Equal(t, "run1", st.Predicate.RunDetails.Metadata.InvocationID)
			assert.Contains(t, string(types[PredicateSPDX]), `"fastapi"`)

			none, err := List(ctx, other)
			require.NoError(t, err)
			assert.Empty(t, none, "another image of the same repository has no statements")
		})
	}
}

func TestSBOMNeedsAnObject(t *testing.T) {
	h, err := v1.NewHash("sha256:" + strings.Repeat("a", 64))
	require.NoError(t, err)
	_, err = SBOM("r", h, []byte(`[1,2]`))
	assert.ErrorContains(t, err, "SPDX document")
}

func TestFromBuildKitWantsSLSAProvenance(t *testing.T) {
	h, err := v1.NewHash("sha256:" + strings.Repeat("b", 64))
	require.NoError(t, err)
	_, err = FromBuildKit([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"`+strings.Repeat("c", 64)+`"}}],"predicateType":"https://spdx.dev/Document","predicate":{}}`), "r", h)
	assert.ErrorContains(t, err, "want "+PredicateSLSA)
	_, err = FromBuildKit([]byte(`not json`), "r", h)
	assert.ErrorContains(t, err, "BuildKit's provenance")
	out, err := FromBuildKit([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"`+strings.Repeat("c", 64)+`"}}],"predicateType":"`+PredicateSLSA+`","predicate":{"buildDefinition":{"buildType":"bk"}}}`), "reg/repo", h)
	require.NoError(t, err)
	assert.Contains(t, string(out), `"digest":{"sha256":"`+strings.Repeat("b", 64)+`"}`)
	assert.Contains(t, string(out), `"buildkit_subject":["x@sha256:`+strings.Repeat("c", 64)+`"]`)
	assert.Contains(t, string(out), `"buildType":"bk"`, "the predicate is BuildKit's, untouched")
}
