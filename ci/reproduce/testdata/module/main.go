// A Dagger module shaped like the project's (main.go at the root), for the
// parser's tests.
package main

import (
	"context"

	"github.com/kidney-genetics/kidney-genetics-db/internal/dagger"
)

type KidneyGenetics struct {
	Source *dagger.Directory
	// +private
	Profile string
}

func New(
	// +defaultPath="/"
	// +ignore=["**/node_modules", "results"]
	source *dagger.Directory,
	// Where base images come from.
	// +optional
	// +default="upstream"
	profile string,
	// +optional
	revision string,
	// A vulnerability database directory.
	// +optional
	vulnDb *dagger.Directory,
) (*KidneyGenetics, error) {
	return &KidneyGenetics{Source: source, Profile: profile}, nil
}

// Images are the two production images.
type Images struct {
	Backend  *dagger.Container
	Frontend *dagger.Container
	// +private
	secret string
}

// Build the images.
func (m *KidneyGenetics) Build(ctx context.Context) (*Images, error) { return nil, nil }

// TestE2e runs the end-to-end checks.
// +cache="never"
func (m *KidneyGenetics) TestE2e(
	ctx context.Context,
	// +optional
	allowFailure bool,
	// +optional
	runId string,
) (*dagger.Directory, error) {
	return nil, nil
}

func (m *KidneyGenetics) Publish(
	ctx context.Context,
	registry string,
	// +optional
	username string,
	// +optional
	password *dagger.Secret,
	tags []string,
) (string, error) {
	return "", nil
}

func (m *KidneyGenetics) helper() {}
