package checks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
	"github.com/kidney-genetics/kidney-genetics-db/ci/supplyjson"
)

// The supply-chain checks run kgci-supplychain (ci/supplychain: syft and grype, in a module
// of its own for their newer Go) and read its JSON (ci/supplyjson).

// expectedEcosystems are the package kinds an image's SBOM must list: an SBOM that lost
// one (a dropped lock file, a base without dpkg status) would still look plausible.
var expectedEcosystems = map[string][]string{
	dockerstack.Backend:  {"deb", "python"},
	dockerstack.Frontend: {"deb", "npm"},
}

// SBOMDir is the results subdirectory of the SBOMs: <service>.spdx.json, .cdx.json, .syft.json.
const SBOMDir = "sbom"

// SupplyChain is what the supply-chain checks learned of one image, for the reports.
type SupplyChain struct {
	Packages int      // in the SBOM; 0 when none was made
	Files    []string // SBOM documents, relative to the results directory
	Scan     string   // vulnerability verdict, one line; empty when not scanned
}

type sbomCache struct {
	wg sync.WaitGroup // prefetches in flight
	mu sync.Mutex
	m  map[string]*sbomLoad
	// info is filled by the checks as they run.
	info map[string]*SupplyChain
}

type sbomLoad struct {
	once sync.Once
	res  supplyjson.SBOM
	took time.Duration
	err  error
}

// SupplyChainTool finds kgci-supplychain: $KGCI_SUPPLYCHAIN, else next to this
// executable, else on PATH.
func SupplyChainTool() (string, error) {
	if p := os.Getenv("KGCI_SUPPLYCHAIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("KGCI_SUPPLYCHAIN: %w", err)
		}
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), supplyjson.Binary)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(supplyjson.Binary); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s was not found next to kgci, on PATH or in $KGCI_SUPPLYCHAIN: build it with `go build -C ci/supplychain -o \"$PWD/bin/%s\" ./cmd/%s` (scripts/pipeline.sh does)",
		supplyjson.Binary, supplyjson.Binary, supplyjson.Binary)
}

// runTool runs kgci-supplychain and decodes its JSON into out; a failure carries its stderr.
func runTool(ctx context.Context, out any, args ...string) error {
	tool, err := SupplyChainTool()
	if err != nil {
		return err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// On cancellation (Ctrl-C, the run's timeout) ask first: the tool removes the
	// image it unpacked under /tmp when it stops on SIGTERM.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return errors.New(strings.TrimPrefix(msg, supplyjson.Binary+": "))
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return fmt.Errorf("%s %s printed no JSON it should: %w", supplyjson.Binary, args[0], err)
	}
	return nil
}

// SBOMCacheEnv names the directory where kgci-supplychain keeps the SBOMs of
// images it cataloged ("none": no cache).
const SBOMCacheEnv = "KGCI_SBOM_CACHE"

// SBOMCacheDir is where the SBOMs are cached: dir when given (Env.SBOMCache),
// else $KGCI_SBOM_CACHE, else sbom/ under $KGCI_CACHE, else under the user's
// cache directory; "" for none (either of the first two saying "none").
func SBOMCacheDir(dir string) string {
	if dir == "" {
		dir = os.Getenv(SBOMCacheEnv)
	}
	switch {
	case dir == "none":
		return ""
	case dir != "":
		return dir
	}
	if c := os.Getenv("KGCI_CACHE"); c != "" {
		return filepath.Join(c, "sbom")
	}
	if c, err := os.UserCacheDir(); err == nil {
		return filepath.Join(c, "kgci", "sbom")
	}
	return ""
}

// WaitBackground waits for the work Prefetch started: the SBOM tool it runs must not
// outlive the run, which cancels it through RunCtx when interrupted.
func (e *Env) WaitBackground() { e.sboms.wg.Wait() }

// SupplyChain returns what the supply-chain checks recorded, by service.
func (e *Env) SupplyChain() map[string]SupplyChain {
	e.sboms.mu.Lock()
	defer e.sboms.mu.Unlock()
	out := map[string]SupplyChain{}
	for k, v := range e.sboms.info {
		out[k] = *v
	}
	return out
}

func (e *Env) supplyInfo(svc string) *SupplyChain {
	e.sboms.mu.Lock()
	defer e.sboms.mu.Unlock()
	if e.sboms.info == nil {
		e.sboms.info = map[string]*SupplyChain{}
	}
	if e.sboms.info[svc] == nil {
		e.sboms.info[svc] = &SupplyChain{}
	}
	return e.sboms.info[svc]
}

// sbomOf catalogs the service's image once per run: the tested tarball when there is
// one, else the image saved from the engine (the exact image under test either way).
// The documents go to the results' sbom/ directory.
func (e *Env) sbomOf(svc string) *sbomLoad {
	e.sboms.mu.Lock()
	if e.sboms.m == nil {
		e.sboms.m = map[string]*sbomLoad{}
	}
	l, ok := e.sboms.m[svc]
	if !ok {
		l = &sbomLoad{}
		e.sboms.m[svc] = l
	}
	e.sboms.mu.Unlock()
	l.once.Do(func() {
		t0 := time.Now()
		// Not the calling check's context: another check may be waiting for this
		// result. The run's own context still ends it (Ctrl-C).
		parent := e.RunCtx
		if parent == nil {
			parent = context.Background()
		}
		ctx, cancel := context.WithTimeout(parent, 3*time.Minute)
		defer cancel()
		defer func() { l.took = time.Since(t0) }()
		ref := e.image(svc)
		tarball := e.Tarballs[svc]
		if tarball == "" {
			dir, err := os.MkdirTemp("", "kgci-sbom-")
			if err != nil {
				l.err = err
				return
			}
			defer os.RemoveAll(dir)
			tarball = filepath.Join(dir, svc+".tar")
			if _, err := e.Docker().Run(ctx, "save", "-o", tarball, ref); err != nil {
				l.err = err
				return
			}
		}
		version := ""
		if img, err := e.Docker().InspectImage(ctx, ref); err == nil {
			version = img.ID
		}
		args := []string{"sbom", "--service", svc, "--tarball", tarball,
			"--name", strings.SplitN(ref, ":", 2)[0], "--version", version, "--out", filepath.Join(e.ResultsDir, SBOMDir)}
		if dir := SBOMCacheDir(e.SBOMCache); dir != "" {
			args = append(args, "--cache", dir)
		}
		l.err = runTool(ctx, &l.res, args...)
	})
	return l
}

var supplyChainSBOM = Check{
	Name:      "supplychain.sbom",
	Docker:    true,
	Slow:      true,
	usesSBOMs: true,
	Timeout:   3 * time.Minute,
	Run: func(ctx context.Context, e *Env) Outcome {
		var notes, bad []string
		for _, svc := range []string{dockerstack.Backend, dockerstack.Frontend} {
			l := e.sbomOf(svc)
			if l.err != nil {
				return failf("no SBOM for the %s image %s: %v", svc, e.image(svc), l.err)
			}
			info := e.supplyInfo(svc)
			info.Packages = l.res.Packages
			info.Files = nil
			for _, p := range l.res.Files {
				if rel, err := filepath.Rel(e.ResultsDir, p); err == nil {
					info.Files = append(info.Files, rel)
				}
			}
			var kinds []string
			for k, n := range l.res.ByType {
				kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
			}
			sort.Strings(kinds)
			how := fmt.Sprintf("in %.1fs", l.took.Seconds())
			if l.res.Cached {
				how = fmt.Sprintf("from the cache (same image and tool binary) in %.1fs", l.took.Seconds())
			}
			notes = append(notes, fmt.Sprintf("%s: %d packages (%s) %s", svc, info.Packages, strings.Join(kinds, ", "), how))
			for _, t := range expectedEcosystems[svc] {
				if l.res.ByType[t] == 0 {
					bad = append(bad, fmt.Sprintf("%s: no %s packages", svc, t))
				}
			}
		}
		if len(bad) > 0 {
			return failf("the SBOM misses what the image holds: %s (%s). The backend must keep dpkg's status and /opt/venv's *.dist-info; the frontend dpkg's status (base image) and %s (ci/spec/images.go)",
				strings.Join(bad, "; "), strings.Join(notes, "; "), "the package-lock.json at "+spec.FrontendLockfile)
		}
		return passf("SPDX 2.3, CycloneDX and syft JSON written to %s/: %s", SBOMDir, strings.Join(notes, "; "))
	},
}

// VulnFile is the SARIF file supplychain.vulnerabilities writes into the results (GitHub
// code scanning reads it).
const VulnFile = "vulnerabilities.sarif"

var supplyChainVulnerabilities = Check{
	Name:      "supplychain.vulnerabilities",
	Docker:    true,
	Slow:      true,
	usesSBOMs: true,
	Timeout:   3 * time.Minute,
	Run: func(ctx context.Context, e *Env) Outcome {
		if e.VulnDB == "" {
			return skipf("nothing scanned: no vulnerability database was given. Pass --vuln-db DIR (a grype database; `%s vulndb update --dir DIR` downloads one where the internet is reachable); the GitHub workflow does", supplyjson.Binary)
		}
		failOn := e.VulnFailOn
		if failOn == "" {
			failOn = "high"
		}
		args := []string{"scan", "--db", e.VulnDB, "--fail-on", failOn, "--sarif", filepath.Join(e.ResultsDir, VulnFile)}
		if e.VulnIgnore != "" {
			args = append(args, "--ignore", e.VulnIgnore)
		}
		for _, svc := range []string{dockerstack.Backend, dockerstack.Frontend} {
			l := e.sbomOf(svc)
			if l.err != nil {
				return failf("nothing scanned: no SBOM for the %s image %s: %v", svc, e.image(svc), l.err)
			}
			syft := ""
			for _, f := range l.res.Files {
				if strings.HasSuffix(f, ".syft.json") {
					syft = f
				}
			}
			if syft == "" {
				return failf("nothing scanned: %s wrote no syft JSON for %s (%v)", supplyjson.Binary, svc, l.res.Files)
			}
			args = append(args, svc+"="+syft)
		}
		if err := os.MkdirAll(e.ResultsDir, 0o755); err != nil {
			return failf("results directory: %v", err)
		}
		var res supplyjson.Scan
		if err := runTool(ctx, &res, args...); err != nil {
			return failf("%v", err)
		}
		var blocking, notes []string
		expired := map[string]supplyjson.Expired{}
		for _, r := range res.Reports {
			b := r.Blocking()
			verdict := "pass"
			if len(b) > 0 {
				verdict = "fail"
			}
			line := fmt.Sprintf("%s: %d blocking at or above %s, %d found, %d ignored", verdict, len(b), res.FailOn, len(r.Findings), r.Ignored())
			e.supplyInfo(r.Service).Scan = line
			notes = append(notes, r.Service+" "+line)
			for _, f := range b {
				fix := "no fix published"
				if len(f.FixedIn) > 0 {
					fix = "fixed in " + strings.Join(f.FixedIn, ", ")
				}
				blocking = append(blocking, fmt.Sprintf("%s: %s %s in %s %s (%s; %s)", r.Service, f.Severity, f.ID, f.Package, f.Version, f.Type, fix))
			}
			for _, x := range r.Expired {
				expired[x.ID+"/"+x.Package] = x
			}
		}
		dbNote := fmt.Sprintf("database %s built %s", res.DB.Dir, res.DB.Built.UTC().Format("2006-01-02"))
		var exp []string
		for _, x := range expired {
			exp = append(exp, fmt.Sprintf("%s (expired %s)", x.ID, x.Expires))
		}
		sort.Strings(exp)
		expNote := ""
		if len(exp) > 0 {
			expNote = fmt.Sprintf(" Expired ignore entries in %s no longer apply: %s.", e.VulnIgnore, strings.Join(exp, ", "))
		}
		out := Outcome{Files: []string{VulnFile}}
		if len(blocking) > 0 {
			out.Status = Fail
			out.Message = fmt.Sprintf("known vulnerabilities at or above %s: %s. Upgrade the package (base image, pyproject.toml, package-lock.json), or accept the risk in %s with a reason and an expiry date.%s (%s; all findings in %s)",
				res.FailOn, strings.Join(firstOf(blocking, 8), "; "), orNone(e.VulnIgnore), expNote, dbNote, VulnFile)
			out.Details = strings.Join(blocking, "\n")
			return out
		}
		out.Status = Pass
		out.Message = fmt.Sprintf("%s.%s (%s; findings in %s)", strings.Join(notes, "; "), expNote, dbNote, VulnFile)
		return out
	},
}

func orNone(ignoreFile string) string {
	if ignoreFile == "" {
		return "an ignore file (--vuln-ignore)"
	}
	return ignoreFile
}
