// Package sbom catalogs what is inside a built image (Debian packages from dpkg's status,
// Python distributions in /opt/venv, the npm packages recorded for the frontend bundle) with
// syft, from the docker-archive tarball that was tested, and writes it as SPDX 2.3 JSON and
// CycloneDX JSON. The catalog is kept in memory too: the vulnerability gate (ci/vulnscan)
// matches the same packages the SBOM lists, so the two can never disagree.
package sbom

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/anchore/stereoscope"
	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/cataloging"
	"github.com/anchore/syft/syft/format"
	"github.com/anchore/syft/syft/format/cyclonedxjson"
	"github.com/anchore/syft/syft/format/spdxjson"
	"github.com/anchore/syft/syft/format/syftjson"
	"github.com/anchore/syft/syft/pkg"
	syftsbom "github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"
	// syft's RPM cataloger needs a "sqlite" database/sql driver; this is the one grype
	// registers too (two drivers under one name would panic at start).
	_ "github.com/glebarez/go-sqlite"
)

// File name suffixes in the results' sbom/ directory: <service>.spdx.json, .cdx.json and
// .syft.json (syft's own format, which keeps everything a scanner needs: grype reads it).
const (
	SPDXSuffix      = ".spdx.json"
	CycloneDXSuffix = ".cdx.json"
	SyftSuffix      = ".syft.json"
	// Dir is the results subdirectory the documents are written to.
	Dir = "sbom"
)

// Tool names the generator in the documents' creator fields.
var Tool = "kgci"

// Image is one image's catalog.
type Image struct {
	Service string
	// SBOM is syft's model: what is written, and what ci/vulnscan matches.
	SBOM *syftsbom.SBOM
}

// Packages is the number of packages found.
func (i *Image) Packages() int { return i.SBOM.Artifacts.Packages.PackageCount() }

// Package is one cataloged package, as tests and summaries name them.
type Package struct {
	Name, Version, Type string
}

// List returns the packages sorted by type, name and version.
func (i *Image) List() []Package {
	var out []Package
	for p := range i.SBOM.Artifacts.Packages.Enumerate() {
		out = append(out, Package{Name: p.Name, Version: p.Version, Type: string(p.Type)})
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Type != out[b].Type {
			return out[a].Type < out[b].Type
		}
		if out[a].Name != out[b].Name {
			return out[a].Name < out[b].Name
		}
		return out[a].Version < out[b].Version
	})
	return out
}

// Find returns the versions of the packages of the given type and name (pkg.DebPkg,
// pkg.PythonPkg, pkg.NpmPkg).
func (i *Image) Find(t pkg.Type, name string) []string {
	var v []string
	for p := range i.SBOM.Artifacts.Packages.Enumerate(t) {
		if p.Name == name {
			v = append(v, p.Version)
		}
	}
	sort.Strings(v)
	return v
}

var catalogMu sync.Mutex

// FromTarball catalogs the image in a docker-archive tarball (what `kgci build` writes and
// test-e2e loads). name and version identify the image in the documents (the service's
// image reference and its manifest digest).
func FromTarball(ctx context.Context, service, tarball, name, version string) (*Image, error) {
	if _, err := os.Stat(tarball); err != nil {
		return nil, fmt.Errorf("sbom of %s: %w (the docker-archive that kgci build wrote)", service, err)
	}
	// Stereoscope unpacks the archive into a process-wide temporary directory that
	// Cleanup removes whole: one image at a time, or one call would pull the files from
	// under another.
	catalogMu.Lock()
	defer catalogMu.Unlock()
	defer stereoscope.Cleanup()
	cfg := syft.DefaultGetSourceConfig().
		WithSources("docker-archive").
		WithAlias(source.Alias{Name: name, Version: version})
	src, err := syft.GetSource(ctx, tarball, cfg)
	if err != nil {
		return nil, fmt.Errorf("sbom of %s: reading %s: %w", service, tarball, err)
	}
	defer src.Close()
	// The catalogers syft selects for an image (dpkg, python, installed npm packages,
	// binaries), plus package-lock.json: a bundled frontend keeps no node_modules, only
	// the lock file it was built from (dev dependencies are left out by default).
	// Files are not listed, as an image's SBOM lists packages.
	sc := syft.DefaultCreateSBOMConfig().
		WithTool(Tool, "").
		WithCatalogerSelection(cataloging.NewSelectionRequest().WithDefaults("image").WithAdditions("javascript-lock-cataloger")).
		WithoutFiles()
	s, err := syft.CreateSBOM(ctx, src, sc)
	if err != nil {
		return nil, fmt.Errorf("sbom of %s: cataloging %s: %w", service, tarball, err)
	}
	return &Image{Service: service, SBOM: s}, nil
}

// Write writes <dir>/<service>.spdx.json, .cdx.json and .syft.json and returns their paths
// in that order.
func (i *Image) Write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, f := range []struct {
		suffix string
		enc    func() (syftsbom.FormatEncoder, error)
	}{
		{SPDXSuffix, func() (syftsbom.FormatEncoder, error) {
			return spdxjson.NewFormatEncoderWithConfig(spdxjson.DefaultEncoderConfig())
		}},
		{CycloneDXSuffix, func() (syftsbom.FormatEncoder, error) {
			return cyclonedxjson.NewFormatEncoderWithConfig(cyclonedxjson.DefaultEncoderConfig())
		}},
		{SyftSuffix, func() (syftsbom.FormatEncoder, error) { return syftjson.NewFormatEncoder(), nil }},
	} {
		enc, err := f.enc()
		if err != nil {
			return nil, err
		}
		b, err := format.Encode(*i.SBOM, enc)
		if err != nil {
			return nil, fmt.Errorf("sbom of %s: %s: %w", i.Service, f.suffix, err)
		}
		p := filepath.Join(dir, i.Service+f.suffix)
		if err := os.WriteFile(p, append(bytes.TrimSpace(b), '\n'), 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// Read reads back an SBOM that Write wrote in syft's format.
func Read(service, path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sbom of %s: %w", service, err)
	}
	defer f.Close()
	s, _, _, err := format.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("sbom of %s: %s: %w", service, path, err)
	}
	if s == nil {
		return nil, fmt.Errorf("sbom of %s: %s is not an SBOM syft can read", service, path)
	}
	return &Image{Service: service, SBOM: s}, nil
}
