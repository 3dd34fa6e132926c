package baseimage

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// prunedDirs keep their directory entry but never their contents: they are
// kernel filesystems at run time, and a chroot may have left mounts or device
// nodes in them.
var prunedDirs = map[string]bool{"proc": true, "sys": true, "dev": true}

// WriteDirTar writes the tree under root to w as a layer tar that depends only
// on the tree: entries in lexical order, names relative to root without "./",
// mtimes clamped to epoch, numeric owners kept (no user/group names), hardlinks
// as link entries, device nodes and sockets left out (the runtime provides
// /dev), setuid/setgid/sticky bits kept.
func WriteDirTar(w io.Writer, root string, epoch time.Time) error {
	tw := tar.NewWriter(w)
	seen := map[[2]uint64]string{} // (dev, inode) -> first name, for hardlinks
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		hdr, skip, err := headerFor(p, rel, fi, epoch)
		if err != nil || skip {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && hdr.Typeflag == tar.TypeReg && st.Nlink > 1 {
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if first, ok := seen[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				seen[key] = hdr.Name
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar header for %s: %w", rel, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if err := copyFile(tw, p, hdr.Size); err != nil {
				return err
			}
		}
		if fi.IsDir() && prunedDirs[rel] {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func copyFile(w io.Writer, p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return fmt.Errorf("copy %s: %w", p, err)
	}
	if n != size {
		return fmt.Errorf("%s changed size while archiving (%d != %d bytes)", p, n, size)
	}
	return nil
}

// headerFor builds a normalised header; skip is true for entries that do not
// belong in an image layer.
func headerFor(p, rel string, fi fs.FileInfo, epoch time.Time) (*tar.Header, bool, error) {
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(fi.Mode().Perm()),
		ModTime: clamp(fi.ModTime(), epoch),
	}
	if fi.Mode()&fs.ModeSetuid != 0 {
		hdr.Mode |= 0o4000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		hdr.Mode |= 0o2000
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		hdr.Mode |= 0o1000
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
	case m.IsDir():
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
	case m&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return nil, false, err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case m&fs.ModeNamedPipe != 0:
		hdr.Typeflag = tar.TypeFifo
	default: // device nodes, sockets
		return nil, true, nil
	}
	return hdr, false, nil
}

func clamp(t, epoch time.Time) time.Time {
	if t.After(epoch) {
		t = epoch
	}
	// Whole seconds: sub-second mtimes would add PAX records that vary run to run.
	return t.Truncate(time.Second).UTC()
}

// NormalizeTar copies a rootfs tar from r to w applying WriteDirTar's rules
// (entry order is kept as in the input).
func NormalizeTar(w io.Writer, r io.Reader, epoch time.Time) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		in, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading rootfs tar: %w", err)
		}
		name := strings.TrimPrefix(path.Clean("/"+in.Name), "/")
		if name == "" {
			continue
		}
		if top, rest, nested := strings.Cut(name, "/"); nested && prunedDirs[top] && rest != "" {
			continue
		}
		switch in.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
		default:
			continue
		}
		out := &tar.Header{
			Typeflag: in.Typeflag,
			Name:     name,
			Linkname: in.Linkname,
			Size:     in.Size,
			Mode:     in.Mode & 0o7777,
			Uid:      in.Uid,
			Gid:      in.Gid,
			ModTime:  clamp(in.ModTime, epoch),
		}
		if in.Typeflag == tar.TypeDir {
			out.Name += "/"
		}
		if in.Typeflag == tar.TypeLink {
			out.Linkname = strings.TrimPrefix(path.Clean("/"+in.Linkname), "/")
			out.Size = 0
		}
		if in.Typeflag != tar.TypeReg {
			out.Size = 0
		}
		if err := tw.WriteHeader(out); err != nil {
			return err
		}
		if in.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}
