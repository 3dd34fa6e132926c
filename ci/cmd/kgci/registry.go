package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

const registrySummary = "Serve a throw-away OCI registry in memory (build cache and publish experiments, the benchmark)"

func init() {
	register(command{
		name:    "registry",
		summary: registrySummary,
		run:     runRegistry,
	})
}

// runRegistry serves go-containerregistry's in-memory registry until the
// context ends (Ctrl-C, SIGTERM). Everything pushed to it is gone when it
// stops: it is for a cache shared between builders on one machine, a
// benchmark or a publish dry run, never for images anyone keeps.
func runRegistry(ctx context.Context, args []string) error {
	fs := newFlags("registry", registrySummary+`.

Plain HTTP: builders reach it with registry.insecure=true in --cache-to and
--cache-from, e.g.
  kgci registry --addr 127.0.0.1:5000 &
  kgci build --cache-to type=registry,ref=127.0.0.1:5000/kg/cache,mode=max,registry.insecure=true`)
	addr := fs.String("addr", "127.0.0.1:5000", "address to listen on")
	quiet := fs.Bool("quiet", false, "do not log every request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("registry: %w (is another registry on %s? pick a free one with --addr)", err, *addr)
	}
	var opts []registry.Option
	if *quiet {
		opts = append(opts, registry.Logger(log.New(nopWriter{}, "", 0)))
	}
	srv := &http.Server{Handler: registry.New(opts...), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "kgci registry: serving on http://%s (in memory; Ctrl-C stops it)\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
