package buildkit

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
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

// writeDockerArchive writes the image manifest names from the store in dir to
// tarball: the docker-archive (manifest.json beside an OCI layout) that BuildKit's
// docker exporter writes with tar=true. containerd's archive exporter, the one
// BuildKit uses, writes every record but the layers; the layers, nearly all of
// the bytes, are spliced in at their sorted places (its order) straight from
// the store's files, copied in the kernel. The exporter would hash each layer
// again and copy it through user space (for the backend, 40 ms more than cp);
// the store verified every blob's digest when the daemon wrote it. Renamed
// into place only when complete.
func writeDockerArchive(ctx context.Context, cs content.Store, dir string, manifest ocispecs.Descriptor, names []string, tarball string) (err error) {
	layers, err := layerDescriptors(ctx, cs, manifest)
	if err != nil {
		return err
	}
	var small bytes.Buffer
	if err := archive.Export(ctx, cs, &small, archive.WithManifest(manifest, names...),
		archive.WithBlobFilter(func(d ocispecs.Descriptor) bool { _, layer := layers[d.Digest]; return !layer })); err != nil {
		return err
	}
	type record struct {
		hdr  *tar.Header
		body []byte // the exporter's records
		file string // a layer in the store
	}
	var records []record
	tr := tar.NewReader(&small)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the exporter's records: %w", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		records = append(records, record{hdr: h, body: body})
	}
	for d, desc := range layers {
		records = append(records, record{
			// As the exporter's blobRecord writes it.
			hdr:  &tar.Header{Name: path.Join(ocispecs.ImageBlobsDir, d.Algorithm().String(), d.Encoded()), Mode: 0o444, Size: desc.Size, Typeflag: tar.TypeReg},
			file: filepath.Join(dir, ocispecs.ImageBlobsDir, d.Algorithm().String(), d.Encoded()),
		})
	}
	slices.SortStableFunc(records, func(a, b record) int { return strings.Compare(a.hdr.Name, b.hdr.Name) })

	// Renamed over the old tarball, the new one would be flushed to disk on the
	// spot (ext4's auto_da_alloc for replace-via-rename), and deleting 50 MB
	// takes as long as writing them: the old one is moved aside and deleted
	// while the new one is written. A reader meanwhile finds no tarball, never
	// a partial one.
	if err := os.Rename(tarball, tarball+".old"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var removeErr error
	removed := make(chan struct{})
	go func() {
		defer close(removed)
		removeErr = ignoreNotExist(os.Remove(tarball + ".old"))
	}()
	defer func() { <-removed }()
	f, err := os.Create(tarball + ".partial")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tarball + ".partial")
		}
	}()
	for _, r := range records {
		if err := writeRecord(f, r.hdr, r.body, r.file); err != nil {
			return fmt.Errorf("%s: %w", r.hdr.Name, err)
		}
	}
	// The end-of-archive marker: two zero blocks, as tar.Writer.Close writes.
	if _, err := f.Write(make([]byte, 2*blockSize)); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if <-removed; removeErr != nil {
		return removeErr
	}
	return os.Rename(tarball+".partial", tarball)
}

const blockSize = 512

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// layerDescriptors are the layers manifest lists, by digest.
func layerDescriptors(ctx context.Context, cs content.Provider, manifest ocispecs.Descriptor) (map[digest.Digest]ocispecs.Descriptor, error) {
	raw, err := content.ReadBlob(ctx, cs, manifest)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", manifest.Digest, err)
	}
	var m ocispecs.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", manifest.Digest, err)
	}
	out := map[digest.Digest]ocispecs.Descriptor{}
	for _, l := range m.Layers {
		out[l.Digest] = l
	}
	return out, nil
}

// writeRecord appends one tar record to f: the header block(s) as tar.Writer
// makes them, the content (body, or the file copied in the kernel:
// copy_file_range between two regular files), and the padding to a block.
func writeRecord(f *os.File, h *tar.Header, body []byte, file string) error {
	var hb bytes.Buffer
	if err := tar.NewWriter(&hb).WriteHeader(h); err != nil {
		return err
	}
	if _, err := f.Write(hb.Bytes()); err != nil {
		return err
	}
	var n int64
	if file == "" {
		w, err := f.Write(body)
		if err != nil {
			return err
		}
		n = int64(w)
	} else {
		src, err := os.Open(file)
		if err != nil {
			return err
		}
		n, err = io.Copy(f, src)
		src.Close()
		if err != nil {
			return err
		}
	}
	if n != h.Size {
		return fmt.Errorf("wrote %d bytes, the descriptor says %d", n, h.Size)
	}
	if pad := (blockSize - n%blockSize) % blockSize; pad > 0 {
		if _, err := f.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	return nil
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
