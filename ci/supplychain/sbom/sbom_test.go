package sbom

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The real images are cataloged in ci/e2etest (TestSBOMListsWhatTheImagesHold); here,
// what a wrong path says.
func TestFromTarballNamesAMissingArchive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "backend.tar")
	_, err := FromTarball(context.Background(), "backend", p, "kidney_genetics_backend", "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "sbom of backend")
	assert.Contains(t, err.Error(), p)
	assert.Contains(t, err.Error(), "kgci build")
}
