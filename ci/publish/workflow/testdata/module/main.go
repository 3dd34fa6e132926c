// A Dagger module shaped like the project's, for the parser's tests.
package main

import (
	"context"

	"dagger.io/dagger"
)

type KidneyGenetics struct {
	Profile string
	Source  *dagger.Directory
}

func New(
	// Where base images come from.
	// +optional
	// +default="upstream"
	profile string,
	// +defaultPath="/"
	source *dagger.Directory,
) *KidneyGenetics {
	return &KidneyGenetics{Profile: profile, Source: source}
}

// Build returns the image tarballs.
func (m *KidneyGenetics) Build(ctx context.Context) (*dagger.Directory, error) { return nil, nil }

// TestE2e runs the end-to-end checks.
func (m *KidneyGenetics) TestE2e(
	ctx context.Context,
	// +optional
	keepGoing bool,
) (*dagger.Directory, error) {
	return nil, nil
}

func (m *KidneyGenetics) Publish(
	ctx context.Context,
	registry string,
	username string,
	password *dagger.Secret,
	// +optional
	version string,
	// +optional
	imagesDir *dagger.Directory,
) (string, error) {
	return "", nil
}

func (m *KidneyGenetics) Stack() *Stack { return &Stack{} }

type Stack struct{}

func (s *Stack) Backend() *dagger.Container { return nil }

func (m *KidneyGenetics) helper() {}
