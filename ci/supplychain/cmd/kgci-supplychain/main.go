// Command kgci-supplychain makes the images' SBOMs (syft) and judges them against a
// vulnerability database (grype) for kgci's supplychain.* checks, which run it and read its
// JSON (ci/supplyjson). It is a module of its own: syft and grype need a newer Go than the
// Dagger engines the pipeline's module must load on.
//
//	kgci-supplychain sbom --service backend --tarball backend.tar --out results/sbom
//	kgci-supplychain scan --db DIR [--ignore FILE] [--fail-on high] --sarif OUT backend=results/sbom/backend.syft.json ...
//	kgci-supplychain vulndb update|status --dir DIR
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/supplychain/sbom"
	"github.com/kidney-genetics/kidney-genetics-db/ci/supplychain/vulnscan"
	"github.com/kidney-genetics/kidney-genetics-db/ci/supplyjson"
)

const usage = `kgci-supplychain: SBOMs and the vulnerability gate for kgci's supplychain.* checks

  sbom    --service S --tarball FILE [--name N --version V] --out DIR
          catalog a docker-archive; write S.spdx.json, S.cdx.json, S.syft.json
  scan    --db DIR [--ignore FILE] [--fail-on SEVERITY] [--sarif FILE] SERVICE=SYFT.json ...
          match the SBOMs against a grype database; the verdict is in the JSON
  vulndb  update|status --dir DIR
          download (needs the internet) or name the grype database in DIR

Each command prints one JSON document (ci/supplyjson) on stdout; errors go to
stderr with exit status 1 (2 for a usage error).`

type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out, err := run(ctx, os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "kgci-supplychain: %v\n", err)
		if errors.As(err, &usageError{}) {
			os.Exit(2)
		}
		os.Exit(1)
	}
	if out != nil {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	}
}

func run(ctx context.Context, args []string) (any, error) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Println(usage)
		return nil, nil
	}
	switch args[0] {
	case "sbom":
		return runSBOM(ctx, args[1:])
	case "scan":
		return runScan(ctx, args[1:])
	case "vulndb":
		return runVulnDB(ctx, args[1:])
	}
	return nil, usageError{fmt.Errorf("unknown command %q\n\n%s", args[0], usage)}
}

func flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

func runSBOM(ctx context.Context, args []string) (any, error) {
	fs := flags("sbom")
	service := fs.String("service", "", "service name (backend, frontend): names the files")
	tarball := fs.String("tarball", "", "the image, as a docker-archive (docker save, kgci build --out)")
	name := fs.String("name", "", "image name recorded in the documents (default: the service)")
	version := fs.String("version", "", "image version recorded in the documents (e.g. its digest)")
	out := fs.String("out", "", "directory for the documents")
	cacheDir := fs.String("cache", "", "keep the documents here, by this binary, the image's config digest, --name and --version, and take them from here when all four match (default: none)")
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err}
	}
	if *service == "" || *tarball == "" || *out == "" {
		return nil, usageError{errors.New("sbom needs --service, --tarball and --out")}
	}
	if *name == "" {
		*name = *service
	}
	t0 := time.Now()
	var cache *sbom.Cache
	var key string
	if *cacheDir != "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cache = &sbom.Cache{Dir: *cacheDir}
		if key, err = cache.Key(exe, *service, *tarball, *name, *version); err != nil {
			return nil, fmt.Errorf("sbom of %s: %w", *service, err)
		}
		files, meta, ok, err := cache.Get(key, *out)
		if err != nil {
			return nil, fmt.Errorf("sbom of %s: cache %s: %w", *service, *cacheDir, err)
		}
		if ok {
			var res supplyjson.SBOM
			if err := json.Unmarshal(meta, &res); err != nil {
				return nil, fmt.Errorf("sbom of %s: cache entry %s: %w", *service, filepath.Join(*cacheDir, key), err)
			}
			res.Files, res.Seconds, res.Cached = files, time.Since(t0).Seconds(), true
			return res, nil
		}
	}
	img, err := sbom.FromTarball(ctx, *service, *tarball, *name, *version)
	if err != nil {
		return nil, err
	}
	files, err := img.Write(*out)
	if err != nil {
		return nil, err
	}
	by := map[string]int{}
	for _, p := range img.List() {
		by[p.Type]++
	}
	res := supplyjson.SBOM{Service: *service, Packages: img.Packages(), ByType: by}
	if cache != nil {
		meta, err := json.Marshal(res)
		if err != nil {
			return nil, err
		}
		if err := cache.Put(key, files, meta); err != nil {
			return nil, fmt.Errorf("sbom of %s: cache %s: %w", *service, *cacheDir, err)
		}
	}
	res.Files, res.Seconds = files, time.Since(t0).Seconds()
	return res, nil
}

func runScan(ctx context.Context, args []string) (any, error) {
	fs := flags("scan")
	db := fs.String("db", "", "grype database directory (kgci-supplychain vulndb update --dir DIR)")
	ignore := fs.String("ignore", "", "accepted vulnerabilities, each with a reason and an expiry date (vulnerability-ignore.yaml)")
	failOn := fs.String("fail-on", "high", "lowest severity that blocks: negligible, low, medium, high, critical")
	sarifPath := fs.String("sarif", "", "write every finding as SARIF 2.1.0 here (GitHub code scanning)")
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err}
	}
	if *db == "" || fs.NArg() == 0 {
		return nil, usageError{errors.New("scan needs --db DIR and at least one SERVICE=SBOM.syft.json")}
	}
	sev, err := vulnscan.ParseSeverity(*failOn)
	if err != nil {
		return nil, usageError{fmt.Errorf("--fail-on: %w", err)}
	}
	var rules []vulnscan.Rule
	if *ignore != "" {
		if rules, err = vulnscan.LoadIgnore(*ignore); err != nil {
			return nil, err
		}
	}
	// SBOMs are read before the database is opened: a wrong path is cheaper to report.
	type input struct {
		service string
		img     *sbom.Image
	}
	var inputs []input
	for _, a := range fs.Args() {
		svc, path, ok := strings.Cut(a, "=")
		if !ok || svc == "" || path == "" {
			return nil, usageError{fmt.Errorf("%q: want SERVICE=SBOM.syft.json", a)}
		}
		img, err := sbom.Read(svc, path)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, input{svc, img})
	}
	d, err := vulnscan.Open(*db)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	info := d.Info()
	res := supplyjson.Scan{DB: supplyjson.DB{Dir: info.Dir, Built: info.Built, Schema: info.SchemaVersion}, FailOn: sev.String()}
	var reports []*vulnscan.Report
	for _, in := range inputs {
		r, err := d.Scan(ctx, in.service, in.img.SBOM, vulnscan.Options{FailOn: sev, Ignore: rules})
		if err != nil {
			return nil, err
		}
		reports = append(reports, r)
		res.Reports = append(res.Reports, toJSON(r))
	}
	if *sarifPath != "" {
		f, err := os.Create(*sarifPath)
		if err != nil {
			return nil, err
		}
		if err := vulnscan.WriteSARIF(f, reports); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		res.SARIF = *sarifPath
	}
	return res, nil
}

func toJSON(r *vulnscan.Report) supplyjson.Report {
	out := supplyjson.Report{Service: r.Service, Findings: []supplyjson.Finding{}}
	for _, f := range r.Findings {
		j := supplyjson.Finding{ID: f.ID, Severity: f.Severity, Package: f.Package, Version: f.Version, Type: f.Type, FixedIn: f.FixedIn, Blocking: r.Blocks(f)}
		if f.IgnoredBy != nil {
			j.IgnoredBecause = f.IgnoredBy.Reason
		}
		out.Findings = append(out.Findings, j)
	}
	for _, x := range r.Expired {
		out.Expired = append(out.Expired, supplyjson.Expired{ID: x.ID, Package: x.Package, Expires: x.Expires})
	}
	return out
}

func runVulnDB(ctx context.Context, args []string) (any, error) {
	if len(args) == 0 || (args[0] != "update" && args[0] != "status") {
		return nil, usageError{errors.New("vulndb: give update or status, then --dir DIR")}
	}
	fs := flags("vulndb " + args[0])
	dir := fs.String("dir", "", "database directory")
	if err := fs.Parse(args[1:]); err != nil {
		return nil, usageError{err}
	}
	if *dir == "" {
		return nil, usageError{errors.New("vulndb: give --dir DIR")}
	}
	if args[0] == "update" {
		fmt.Fprintf(os.Stderr, "updating the vulnerability database in %s ...\n", *dir)
		if err := vulnscan.Update(ctx, *dir); err != nil {
			return nil, err
		}
	}
	d, err := vulnscan.Open(*dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	i := d.Info()
	return supplyjson.DB{Dir: i.Dir, Built: i.Built, Schema: i.SchemaVersion}, nil
}
