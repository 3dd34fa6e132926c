package daggertest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kidney-genetics/kidney-genetics-db/ci/daggerbuild"
	"github.com/kidney-genetics/kidney-genetics-db/ci/daggertest"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

func TestPublish(t *testing.T) {
	e := daggertest.Start(t, nil)
	c := e.Client(t)
	im, err := daggerbuild.Build(c, opts(spec.Upstream), inputs(c))
	if err != nil {
		t.Fatal(err)
	}
	res, err := daggerbuild.Publish(context.Background(), im, daggerbuild.PublishOptions{
		Registry: "ghcr.io/kidney-genetics", Username: "bot", Password: c.LoadSecretFromID("registry-token"),
		Tags: []string{"1.2.3", "0123456789ab"}, Revision: "0123456789abcdef0123456789abcdef01234567",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 2 {
		t.Fatalf("published %d images, want 2", len(res.Images))
	}
	for i, want := range []string{"ghcr.io/kidney-genetics/kidney_genetics_backend", "ghcr.io/kidney-genetics/kidney_genetics_frontend"} {
		p := res.Images[i]
		if p.Repository != want || !strings.HasPrefix(p.Digest, "sha256:") || p.Pinned != want+"@"+p.Digest {
			t.Errorf("image %d = %+v, want repository %s pinned by digest", i, p, want)
		}
		if len(p.Tags) != 2 || p.Tags[0].Pinned != want+":1.2.3@"+p.Digest {
			t.Errorf("image %d tags = %+v", i, p.Tags)
		}
	}
	if res.Images[0].Digest == res.Images[1].Digest {
		t.Errorf("backend and frontend have the same digest %s", res.Images[0].Digest)
	}
	got := e.Transcript()
	for _, want := range []string{
		`withRegistryAuth(address: "ghcr.io", secret: "id:loadSecretFromID(id:registry-token)`,
		`publish(address: "ghcr.io/kidney-genetics/kidney_genetics_backend:1.2.3")`,
		`publish(address: "ghcr.io/kidney-genetics/kidney_genetics_frontend:0123456789ab")`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no query contains %s", want)
		}
	}
}

func TestPublishRefusesBadInput(t *testing.T) {
	e := daggertest.Start(t, nil)
	c := e.Client(t)
	im, err := daggerbuild.Build(c, opts(spec.Upstream), inputs(c))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    daggerbuild.PublishOptions
		want string
	}{
		{"no registry", daggerbuild.PublishOptions{Tags: []string{"x"}}, "no registry"},
		{"no tags", daggerbuild.PublishOptions{Registry: "ghcr.io"}, "no tags"},
		{"bad tag", daggerbuild.PublishOptions{Registry: "ghcr.io", Tags: []string{"v1/2"}}, "not a valid image tag"},
		{"user without password", daggerbuild.PublishOptions{Registry: "ghcr.io", Tags: []string{"x"}, Username: "bot"}, "both --username and --password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := daggerbuild.Publish(context.Background(), im, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
		})
	}
	if n := len(e.Queries()); n != 0 {
		t.Errorf("refused input still sent %d queries", n)
	}
}
