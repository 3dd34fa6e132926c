package imageinspect

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// File is one tar entry: of a layer, or of the final filesystem.
type File struct {
	Path     string `json:"path"` // absolute, e.g. /app/app/main.py
	Type     byte   `json:"type"` // tar type flag
	Mode     int64  `json:"mode"`
	UID      int    `json:"uid"`
	GID      int    `json:"gid"`
	Size     int64  `json:"size"`
	Linkname string `json:"linkname,omitempty"`
}

// Entry is a File as one layer wrote it (whiteout markers included), with
// what Options.Scan said of its content.
type Entry struct {
	File
	Layer int      `json:"layer"`
	Notes []string `json:"notes,omitempty"`
}

// Layer is one filesystem layer.
type Layer struct {
	DiffID       string `json:"diff_id"`
	Compressed   int64  `json:"compressed"` // 0 when Options.Sizes is SizesNone
	Uncompressed int64  `json:"uncompressed"`
	// CreatedBy is the history entry of the step that made the layer.
	CreatedBy string `json:"created_by,omitempty"`
	// Entries are kept when Options.Scan is set.
	Entries []Entry `json:"-"`
}

// Image is what Read found.
type Image struct {
	Config v1.ConfigFile `json:"-"`
	// ConfigDigest is the digest of the config (an engine's image ID).
	ConfigDigest string  `json:"config_digest"`
	Layers       []Layer `json:"layers"`
	// Totals over Layers.
	Compressed   int64 `json:"compressed"`
	Uncompressed int64 `json:"uncompressed"`
	// Files is the filesystem a container sees, by absolute path (only with
	// Options.Files).
	Files map[string]File `json:"-"`
}

// SizeMode says how a layer's compressed size is learnt.
type SizeMode int

const (
	// SizesNone leaves Compressed at 0.
	SizesNone SizeMode = iota
	// SizesFromBlobs asks the image for its blob sizes: free for images
	// stored compressed (BuildKit's exporters, OCI layouts), but
	// go-containerregistry gzips each layer to answer for a `docker save`
	// archive, whose layers are stored uncompressed.
	SizesFromBlobs
	// SizesMeasured gzips each layer (BestSpeed, within 1% of the blobs
	// BuildKit writes) as it is read anyway: the way to size a `docker save`
	// archive in the same pass.
	SizesMeasured
)

// scanLimit is the largest file whose content Options.Scan sees (keys and
// credentials files are small).
const scanLimit = 1 << 20

// Options say how much of the image to read.
type Options struct {
	Sizes SizeMode
	// Files asks for the final filesystem (Image.Files).
	Files bool
	// Scan, when set, keeps every layer's entries (Layer.Entries) and sees
	// the content of every regular file of up to 1 MiB in every layer; what
	// it returns becomes the entry's Notes.
	Scan func(path string, content []byte) []string
	// Uncompressed are layer sizes already known, by diff ID (an earlier
	// reading of the same layers): without Files or Scan, such a layer is
	// not read at all.
	Uncompressed map[string]int64
	// VerifyDiffIDs hashes each layer's uncompressed stream as it is read and
	// fails when it is not the diff ID the config names: what was read is then
	// provably the image whose config digest the engine reports (a file read in
	// place of the engine's copy).
	VerifyDiffIDs bool
}

// ReadFile opens the tarball at p (see OpenFile) and reads it.
func ReadFile(p string, opt Options) (*Image, error) {
	img, closeImg, err := OpenFile(p)
	if err != nil {
		return nil, err
	}
	defer closeImg()
	out, err := Read(img, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return out, nil
}

// Read reads img in one pass over its layers: each layer's tar is streamed
// once, to mutate.Extract when the final filesystem is wanted, and on the
// way to the entry scanner and the size counters.
func Read(img v1.Image, opt Options) (*Image, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("listing layers: %w", err)
	}
	cn, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("reading the config digest: %w", err)
	}
	out := &Image{Config: *cfg, ConfigDigest: cn.String(), Layers: make([]Layer, len(layers))}
	// History entries without a layer do not count.
	var createdBy []string
	for _, h := range cfg.History {
		if !h.EmptyLayer {
			createdBy = append(createdBy, h.CreatedBy)
		}
	}
	if opt.VerifyDiffIDs && len(cfg.RootFS.DiffIDs) != len(layers) {
		return nil, fmt.Errorf("the config names %d diff IDs for %d layers", len(cfg.RootFS.DiffIDs), len(layers))
	}
	taps := make([]*tap, len(layers))
	wrapped := make([]v1.Layer, len(layers))
	for i, l := range layers {
		taps[i] = &tap{Layer: l, index: i, opt: opt}
		if opt.VerifyDiffIDs {
			taps[i].want = cfg.RootFS.DiffIDs[i]
		}
		wrapped[i] = taps[i]
	}
	if opt.Files {
		// mutate.Extract reads the layers top down and applies the whiteouts.
		rc := mutate.Extract(tapped{Image: img, layers: wrapped})
		out.Files, err = finalFiles(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("reading the final filesystem: %w", err)
		}
	} else {
		for i, t := range taps {
			if opt.Scan == nil && !opt.VerifyDiffIDs && i < len(cfg.RootFS.DiffIDs) {
				if n, ok := opt.Uncompressed[cfg.RootFS.DiffIDs[i].String()]; ok {
					t.done, t.result.Uncompressed = true, n
					continue
				}
			}
			rc, err := t.Uncompressed()
			if err != nil {
				return nil, fmt.Errorf("layer %d: %w", t.index, err)
			}
			_, err = io.Copy(io.Discard, rc)
			if cerr := rc.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("layer %d: %w", t.index, err)
			}
		}
	}
	for i, t := range taps {
		if !t.done {
			return nil, fmt.Errorf("layer %d was never read", i)
		}
		if t.err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, t.err)
		}
		li := t.result
		if i < len(cfg.RootFS.DiffIDs) {
			li.DiffID = cfg.RootFS.DiffIDs[i].String()
		}
		if i < len(createdBy) {
			li.CreatedBy = createdBy[i]
		}
		if opt.Sizes == SizesFromBlobs {
			if li.Compressed, err = layers[i].Size(); err != nil {
				return nil, fmt.Errorf("layer %d size: %w", i, err)
			}
		}
		out.Layers[i] = li
		out.Compressed += li.Compressed
		out.Uncompressed += li.Uncompressed
	}
	return out, nil
}

// tapped is img with its layers wrapped, for mutate.Extract.
type tapped struct {
	v1.Image
	layers []v1.Layer
}

func (t tapped) Layers() ([]v1.Layer, error) { return t.layers, nil }

// tap is a layer whose uncompressed stream, as it is read, also feeds the
// entry scanner and the counters; Close finishes the layer's figures.
type tap struct {
	v1.Layer
	index  int
	opt    Options
	want   v1.Hash // the diff ID to verify (Options.VerifyDiffIDs)
	done   bool
	err    error
	result Layer
}

func (t *tap) Uncompressed() (io.ReadCloser, error) {
	rc, err := t.Layer.Uncompressed()
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	var zw *gzip.Writer
	cw := &counter{}
	sinks := []io.Writer{pw}
	if t.opt.Sizes == SizesMeasured {
		zw, _ = gzip.NewWriterLevel(cw, gzip.BestSpeed)
		sinks = append(sinks, zw)
	}
	n := &counter{}
	sinks = append(sinks, n)
	var sum hash.Hash
	if t.opt.VerifyDiffIDs {
		sum = sha256.New()
		sinks = append(sinks, sum)
	}
	scanned := make(chan []Entry, 1)
	scanErr := make(chan error, 1)
	go func() {
		es, err := t.scan(pr)
		// Whatever follows the end-of-archive blocks is the layer's too.
		_, _ = io.Copy(io.Discard, pr)
		scanned <- es
		scanErr <- err
	}()
	return &tapReader{
		Reader: io.TeeReader(rc, io.MultiWriter(sinks...)),
		close: func() error {
			// The reader may stop at the end-of-archive marker: the rest counts too.
			_, derr := io.Copy(io.MultiWriter(sinks...), rc)
			cerr := rc.Close()
			pw.Close()
			es, serr := <-scanned, <-scanErr
			t.done = true
			t.result.Uncompressed = n.n
			if zw != nil {
				zw.Close()
				t.result.Compressed = cw.n
			}
			t.result.Entries = es
			var verr error
			if sum != nil && derr == nil && cerr == nil {
				if got := "sha256:" + hex.EncodeToString(sum.Sum(nil)); got != t.want.String() {
					verr = fmt.Errorf("its content is %s, not the diff ID %s the config names: the file does not hold the image it claims to", got, t.want)
				}
			}
			t.err = errors.Join(derr, cerr, serr, verr)
			return t.err
		},
	}, nil
}

type tapReader struct {
	io.Reader
	close  func() error
	closed bool
}

func (r *tapReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	return r.close()
}

func (t *tap) scan(r io.Reader) ([]Entry, error) {
	if t.opt.Scan == nil {
		return nil, nil
	}
	var out []Entry
	buf := make([]byte, scanLimit)
	err := eachEntry(r, func(h *tar.Header, content io.Reader) error {
		e := Entry{File: fileOf(h), Layer: t.index}
		if h.Typeflag == tar.TypeReg && h.Size > 0 && h.Size <= scanLimit {
			n, err := io.ReadFull(content, buf[:h.Size])
			if err != nil {
				return fmt.Errorf("%s: %w", e.Path, err)
			}
			e.Notes = t.opt.Scan(e.Path, buf[:n])
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

func fileOf(h *tar.Header) File {
	return File{
		Path: path.Clean("/" + h.Name), Type: h.Typeflag, Mode: h.Mode,
		UID: h.Uid, GID: h.Gid, Size: h.Size, Linkname: h.Linkname,
	}
}

func finalFiles(r io.Reader) (map[string]File, error) {
	out := map[string]File{}
	return out, eachEntry(r, func(h *tar.Header, _ io.Reader) error {
		if f := fileOf(h); f.Path != "/" {
			out[f.Path] = f
		}
		return nil
	})
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
