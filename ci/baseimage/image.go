// Package baseimage turns a root filesystem (a directory tree or a tar) into a
// single-layer OCI image written as an OCI image layout, and converts such a
// layout into a docker-archive tarball for engines that cannot load layouts
// (Docker 20.10). It provides the offline stand-ins for the public base images.
package baseimage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kidney-genetics/kidney-genetics-db/ci/imageinspect"
)

// DefaultEpoch is used for timestamps when SOURCE_DATE_EPOCH is not set. It
// is in the past on purpose: mtimes are clamped to it, and Python's .pyc files
// stay valid only while their source files keep their real (older) mtimes.
var DefaultEpoch = time.Date(2025, 5, 20, 0, 0, 0, 0, time.UTC)

// Config is the runtime configuration written into the image.
type Config struct {
	Env          []string // KEY=VALUE
	Cmd          []string
	Entrypoint   []string
	User         string
	WorkingDir   string
	ExposedPorts []string // "5432/tcp"
	Volumes      []string
	StopSignal   string
	Labels       map[string]string
	Epoch        time.Time // image creation time and mtime clamp; zero means DefaultEpoch
}

func (c Config) epoch() time.Time {
	if c.Epoch.IsZero() {
		return DefaultEpoch
	}
	return c.Epoch.UTC()
}

// BuildLayout writes rootfs (a directory, or a tar file) as a one-layer image
// with cfg into a new OCI layout at out, annotated with refName. out must not
// exist yet. It returns the manifest digest.
func BuildLayout(rootfs, out, refName string, cfg Config) (v1.Hash, error) {
	if refName == "" {
		return v1.Hash{}, errors.New("an image name (ref.name annotation) is required")
	}
	if _, err := os.Stat(out); err == nil {
		return v1.Hash{}, fmt.Errorf("%s already exists; remove it or choose another --out", out)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".layer-*.tar")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := writeRootfsTar(tmp, rootfs, cfg.epoch()); err != nil {
		return v1.Hash{}, fmt.Errorf("archiving %s: %w", rootfs, err)
	}
	if err := tmp.Close(); err != nil {
		return v1.Hash{}, err
	}
	img, err := Image(tmp.Name(), refName, cfg)
	if err != nil {
		return v1.Hash{}, err
	}
	p, err := layout.Write(out, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{imageinspect.RefNameAnnotation: refName})); err != nil {
		return v1.Hash{}, fmt.Errorf("writing layout %s: %w", out, err)
	}
	return img.Digest()
}

func writeRootfsTar(w io.Writer, rootfs string, epoch time.Time) error {
	fi, err := os.Stat(rootfs)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return WriteDirTar(w, rootfs, epoch)
	}
	f, err := os.Open(rootfs)
	if err != nil {
		return err
	}
	defer f.Close()
	return NormalizeTar(w, f, epoch)
}

// Image builds the image from an uncompressed layer tar at layerTar.
func Image(layerTar, refName string, cfg Config) (v1.Image, error) {
	layer, err := tarball.LayerFromFile(layerTar, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: cfg.epoch()}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   created,
			CreatedBy: "kidney-genetics ci/baseimage: offline stand-in " + refName,
		},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = created
	cf.Config = v1.Config{
		Env:        cfg.Env,
		Cmd:        cfg.Cmd,
		Entrypoint: cfg.Entrypoint,
		User:       cfg.User,
		WorkingDir: cfg.WorkingDir,
		StopSignal: cfg.StopSignal,
		Labels:     cfg.Labels,
	}
	if len(cfg.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range cfg.ExposedPorts {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	if len(cfg.Volumes) > 0 {
		cf.Config.Volumes = map[string]struct{}{}
		for _, v := range cfg.Volumes {
			cf.Config.Volumes[v] = struct{}{}
		}
	}
	return mutate.ConfigFile(img, cf)
}

// WriteDockerArchive writes the layout's image as a `docker load` tarball
// tagged tag.
func WriteDockerArchive(layoutDir, refName, tag, out string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("bad tag %q: %w", tag, err)
	}
	img, _, err := imageinspect.FromLayout(layoutDir, refName, nil)
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}
