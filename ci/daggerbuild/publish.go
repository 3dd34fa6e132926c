package daggerbuild

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"dagger.io/dagger"
	"golang.org/x/sync/errgroup"

	"github.com/kidney-genetics/kidney-genetics-db/ci/publish"
)

// PublishOptions say where the images go. The result has the same shape
// as `kgci publish` writes to results/publish.json.
type PublishOptions struct {
	// Registry is host[:port][/namespace], e.g. ghcr.io/kidney-genetics.
	Registry string
	Username string
	// Password may be nil for a registry that needs no login.
	Password *dagger.Secret
	Tags     []string
	Revision string
}

// The OCI distribution spec's tag grammar.
var validTag = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// Publish pushes both images under every tag and returns digest-pinned
// references.
func Publish(ctx context.Context, im Images, o PublishOptions) (*publish.Result, error) {
	host, namespace, _ := strings.Cut(strings.TrimSuffix(o.Registry, "/"), "/")
	if host == "" {
		return nil, fmt.Errorf("no registry: pass --registry HOST[/NAMESPACE], e.g. ghcr.io/kidney-genetics")
	}
	if len(o.Tags) == 0 {
		return nil, fmt.Errorf("no tags: pass --tags, e.g. --tags=1.2.3,$(git rev-parse --short=12 HEAD)")
	}
	for _, t := range o.Tags {
		if !validTag.MatchString(t) {
			return nil, fmt.Errorf("tag %q is not a valid image tag (letters, digits, '.', '_', '-'; at most 128)", t)
		}
	}
	if (o.Username == "") != (o.Password == nil) {
		return nil, fmt.Errorf("registry login needs both --username and --password (a secret, e.g. env:REGISTRY_TOKEN), or neither")
	}
	res := &publish.Result{Registry: o.Registry, Revision: o.Revision, Tags: o.Tags}
	ctrs := []*dagger.Container{im.Backend, im.Frontend}
	res.Images = make([]publish.Pushed, len(publish.ImageNames))
	g, ctx := errgroup.WithContext(ctx)
	for i, name := range publish.ImageNames {
		ctr := ctrs[i]
		if o.Password != nil {
			ctr = ctr.WithRegistryAuth(host, o.Username, o.Password)
		}
		repo := publish.Repository(host, namespace, "", name)
		g.Go(func() error {
			p := publish.Pushed{Name: name, Repository: repo}
			for _, tag := range o.Tags {
				ref := repo + ":" + tag
				pinned, err := ctr.Publish(ctx, ref)
				if err != nil {
					return fmt.Errorf("publish %s: %w", ref, err)
				}
				_, digest, ok := strings.Cut(pinned, "@")
				if !ok || !strings.HasPrefix(digest, "sha256:") {
					return fmt.Errorf("publish %s: the engine answered %q, which has no @sha256: digest", ref, pinned)
				}
				if p.Digest != "" && p.Digest != digest {
					return fmt.Errorf("publish %s: digest %s differs from %s pushed under another tag", ref, digest, p.Digest)
				}
				p.Digest = digest
				p.Tags = append(p.Tags, publish.TagRef{Tag: tag, Ref: ref, Pinned: ref + "@" + digest})
			}
			p.Pinned = repo + "@" + p.Digest
			res.Images[i] = p
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return res, nil
}
