package publish

import (
	"errors"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/mod/semver"
)

// releaseTags are the moving tags docker/metadata-action's semver patterns
// ({{version}}, {{major}}.{{minor}}, {{major}}) and latest=auto give a
// release, with one difference: a moving tag only moves forward. 1.2.4
// released after 1.3.0 gets 1.2.4 and 1.2, but 1 and latest stay on 1.3.0.
// existing are the tags already in the repositories. A pre-release
// (1.3.0-rc.1) gets its own tag only; a version that is not X.Y.Z none.
func releaseTags(version string, existing []string) (moving []string, latest bool) {
	v := "v" + version
	if !semver.IsValid(v) || semver.Canonical(v) != strings.SplitN(v, "+", 2)[0] || semver.Prerelease(v) != "" {
		return nil, false
	}
	newest := func(within func(string) bool) bool {
		for _, t := range existing {
			e := "v" + t
			if semver.IsValid(e) && semver.Canonical(e) == e && semver.Prerelease(e) == "" && within(e) && semver.Compare(e, v) > 0 {
				return false
			}
		}
		return true
	}
	if newest(func(e string) bool { return semver.MajorMinor(e) == semver.MajorMinor(v) }) {
		moving = append(moving, strings.TrimPrefix(semver.MajorMinor(v), "v"))
	}
	if newest(func(e string) bool { return semver.Major(e) == semver.Major(v) }) {
		moving = append(moving, strings.TrimPrefix(semver.Major(v), "v"))
	}
	return moving, newest(func(string) bool { return true })
}

// existingTags lists the tags of repo; a repository that does not exist yet
// has none.
func existingTags(repo string, nameOpts []name.Option, remoteOpts []remote.Option) ([]string, error) {
	r, err := name.NewRepository(repo, nameOpts...)
	if err != nil {
		return nil, err
	}
	tags, err := remote.List(r, remoteOpts...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	return tags, err
}
