// Command baseimage builds the offline stand-in base images as OCI layouts.
//
//	baseimage --rootfs DIR_or_TAR --name NAME --out LAYOUTDIR [--env K=V]... [--cmd ARG]... ...
//	baseimage docker-archive --layout DIR [--name NAME] --tag REPO:TAG --out FILE
//	baseimage digest --layout DIR [--name NAME]   (prints the manifest digest)
//	baseimage info --layout DIR [--name NAME]     (digest and layer sizes)
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/baseimage"
	"github.com/kidney-genetics/kidney-genetics-db/ci/imageinspect"
)

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "baseimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "docker-archive":
			return dockerArchive(args[1:])
		case "digest":
			return digest(args[1:])
		case "info":
			return info(args[1:])
		case "build":
			args = args[1:]
		}
	}
	return build(args)
}

func build(args []string) error {
	fs := flag.NewFlagSet("baseimage", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: baseimage [build] --rootfs DIR_or_TAR --name NAME --out LAYOUTDIR [options]
       baseimage docker-archive --layout DIR --tag REPO:TAG --out FILE [--name NAME]
       baseimage digest --layout DIR [--name NAME]
       baseimage info --layout DIR [--name NAME]

Writes a one-layer image of the root filesystem as a new OCI image layout whose
single manifest carries org.opencontainers.image.ref.name=NAME. Repeatable
options (--env, --cmd, --entrypoint, --expose, --volume, --label) keep their order.

`)
		fs.PrintDefaults()
	}
	var env, cmd, entrypoint, expose, volumes, labels list
	rootfs := fs.String("rootfs", "", "root filesystem: a directory or an uncompressed tar (required)")
	refName := fs.String("name", "", "image name for the ref.name annotation (required)")
	out := fs.String("out", "", "layout directory to create; an existing one is replaced only after the new one is complete (required)")
	user := fs.String("user", "", "default user")
	workdir := fs.String("workdir", "", "working directory")
	stopSignal := fs.String("stop-signal", "", "stop signal, e.g. SIGQUIT")
	epoch := fs.Int64("epoch", epochDefault(), "Unix time for the image's creation time and the mtime clamp (default: $SOURCE_DATE_EPOCH or 2025-05-20)")
	fs.Var(&env, "env", "environment variable K=V (repeatable)")
	fs.Var(&cmd, "cmd", "one argument of Cmd (repeatable)")
	fs.Var(&entrypoint, "entrypoint", "one argument of Entrypoint (repeatable)")
	fs.Var(&expose, "expose", "exposed port, e.g. 5432/tcp (repeatable)")
	fs.Var(&volumes, "volume", "volume path (repeatable)")
	fs.Var(&labels, "label", "label K=V (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rootfs == "" || *refName == "" || *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("--rootfs, --name and --out are required and no positional arguments are accepted")
	}
	for _, e := range env {
		if !strings.Contains(e, "=") {
			return fmt.Errorf("--env %q: want KEY=VALUE", e)
		}
	}
	lm := map[string]string{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		lm[k] = v
	}
	if len(lm) == 0 {
		lm = nil
	}
	cfg := baseimage.Config{
		Env: env, Cmd: cmd, Entrypoint: entrypoint, User: *user, WorkingDir: *workdir,
		ExposedPorts: expose, Volumes: volumes, StopSignal: *stopSignal, Labels: lm,
		Epoch: time.Unix(*epoch, 0),
	}
	// Build next to the target and swap at the end, so an interrupted run never
	// leaves a half-written layout where the cache check would accept it.
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".new-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	staged := filepath.Join(tmp, "layout")
	dgst, err := baseimage.BuildLayout(*rootfs, staged, *refName, cfg)
	if err != nil {
		return err
	}
	// Same image as before: leave the old layout alone, so builds reading it
	// right now are not disturbed.
	if _, desc, err := imageinspect.FromLayout(*out, *refName, nil); err == nil && desc.Digest == dgst {
		fmt.Fprintf(os.Stderr, "baseimage: %s unchanged (%s)\n", *out, dgst)
		fmt.Println(dgst)
		return nil
	}
	// Two renames keep the window without a layout at *out tiny.
	old := filepath.Join(tmp, "old")
	if err := os.Rename(*out, old); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.Rename(staged, *out); err != nil {
		return err
	}
	fmt.Println(dgst)
	return nil
}

func epochDefault() int64 {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			return v
		}
	}
	return baseimage.DefaultEpoch.Unix()
}

func dockerArchive(args []string) error {
	fs := flag.NewFlagSet("baseimage docker-archive", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: baseimage docker-archive --layout DIR --tag REPO:TAG --out FILE [--name NAME]\n\nWrites the layout's image as a tarball for `docker load`.\n\n")
		fs.PrintDefaults()
	}
	dir := fs.String("layout", "", "OCI layout directory (required)")
	refName := fs.String("name", "", "image to pick by ref.name (default: the only one)")
	tag := fs.String("tag", "", "tag to load the image as, e.g. kidney-base/postgres:offline (required)")
	out := fs.String("out", "", "tarball to write (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *tag == "" || *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("--layout, --tag and --out are required")
	}
	return baseimage.WriteDockerArchive(*dir, *refName, *tag, *out)
}

// layoutArgs parses the --layout/--name pair that digest and info share.
func layoutArgs(cmd string, args []string) (dir, refName string, err error) {
	fs := flag.NewFlagSet("baseimage "+cmd, flag.ContinueOnError)
	d := fs.String("layout", "", "OCI layout directory (required)")
	n := fs.String("name", "", "image to pick by ref.name (default: the only one)")
	if err := fs.Parse(args); err != nil {
		return "", "", err
	}
	if *d == "" {
		fs.Usage()
		return "", "", fmt.Errorf("--layout is required")
	}
	return *d, *n, nil
}

func digest(args []string) error {
	dir, refName, err := layoutArgs("digest", args)
	if err != nil {
		return err
	}
	_, desc, err := imageinspect.FromLayout(dir, refName, nil)
	if err != nil {
		return err
	}
	fmt.Println(desc.Digest)
	return nil
}

func info(args []string) error {
	dir, refName, err := layoutArgs("info", args)
	if err != nil {
		return err
	}
	img, desc, err := imageinspect.FromLayout(dir, refName, nil)
	if err != nil {
		return err
	}
	st, err := imageinspect.Read(img, imageinspect.Options{Sizes: imageinspect.SizesFromBlobs})
	if err != nil {
		return err
	}
	fmt.Printf("digest=%s compressed_bytes=%d uncompressed_bytes=%d layers=%d\n", desc.Digest, st.Compressed, st.Uncompressed, len(st.Layers))
	return nil
}
