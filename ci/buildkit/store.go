package buildkit

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// StoreDir is the blob store of image name under outDir: a containerd
// content store (blobs/sha256/...) holding the image's last build. The
// daemon exports into it and sends only the blobs it lacks, so a one-line
// change moves one small layer instead of the whole image; the
// docker-archive is then written from it on this side. A dot directory:
// GitHub's upload-artifact leaves it out of the uploaded results.
func StoreDir(outDir, name string) string {
	return filepath.Join(outDir, ".blobs", name)
}

func openStore(dir string) (content.Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cs, err := local.NewStore(dir)
	if err != nil {
		return nil, fmt.Errorf("blob store %s: %w", dir, err)
	}
	return cs, nil
}

// exportedManifest is the image manifest an export wrote, as the daemon
// described it (with its creation annotation), and the image's names.
func exportedManifest(resp *client.SolveResponse) (ocispecs.Descriptor, []string, error) {
	r := resp.ExporterResponse
	var desc ocispecs.Descriptor
	enc, ok := r[exptypes.ExporterImageDescriptorKey]
	if !ok {
		return desc, nil, errors.New("the daemon did not describe the exported image (no " + exptypes.ExporterImageDescriptorKey + ")")
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return desc, nil, fmt.Errorf("exported image descriptor: %w", err)
	}
	if err := json.Unmarshal(raw, &desc); err != nil {
		return desc, nil, fmt.Errorf("exported image descriptor: %w", err)
	}
	var names []string
	if n := r[exptypes.ExporterImageNameKey]; n != "" {
		names = strings.Split(n, ",")
	}
	return desc, names, nil
}

// writeDockerArchive writes the image manifest names from cs to path with
// containerd's archive exporter, the one BuildKit's docker exporter uses:
// the same docker-archive (manifest.json beside an OCI layout) as an export
// with tar=true. Renamed into place only when complete.
func writeDockerArchive(ctx context.Context, cs content.Store, manifest ocispecs.Descriptor, names []string, path string) (err error) {
	f, err := os.Create(path + ".partial")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path + ".partial")
		}
	}()
	// The exporter writes in the tar writer's 32 KiB steps: one system call
	// each without this buffer, most of the time spent writing.
	w := bufio.NewWriterSize(f, 1<<20)
	if err := archive.Export(ctx, cs, w, archive.WithManifest(manifest, names...)); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".partial", path)
}

// pruneStore deletes every blob of cs that manifest does not reach.
func pruneStore(ctx context.Context, cs content.Store, manifest ocispecs.Descriptor) error {
	keep := map[digest.Digest]bool{}
	err := images.Walk(ctx, images.HandlerFunc(func(ctx context.Context, d ocispecs.Descriptor) ([]ocispecs.Descriptor, error) {
		keep[d.Digest] = true
		return images.Children(ctx, cs, d)
	}), manifest)
	if err != nil {
		return err
	}
	var drop []digest.Digest
	if err := cs.Walk(ctx, func(i content.Info) error {
		if !keep[i.Digest] {
			drop = append(drop, i.Digest)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, d := range drop {
		if err := cs.Delete(ctx, d); err != nil {
			return err
		}
	}
	return nil
}
