package vulnscan

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/anchore/clio"
	"github.com/anchore/grype/grype"
	v6 "github.com/anchore/grype/grype/db/v6"
	"github.com/anchore/grype/grype/db/v6/distribution"
	"github.com/anchore/grype/grype/db/v6/installation"
	"github.com/anchore/grype/grype/match"
	"github.com/anchore/grype/grype/matcher"
	"github.com/anchore/grype/grype/matcher/dpkg"
	"github.com/anchore/grype/grype/matcher/rpm"
	"github.com/anchore/grype/grype/matcher/stock"
	grypepkg "github.com/anchore/grype/grype/pkg"
	"github.com/anchore/grype/grype/version"
	"github.com/anchore/grype/grype/vulnerability"
	"github.com/anchore/syft/syft/format"
	"github.com/anchore/syft/syft/format/syftjson"
	"github.com/anchore/syft/syft/sbom"
)

// DB is an opened grype vulnerability database.
type DB struct {
	provider vulnerability.Provider
	info     DBInfo
}

// Open opens the database that Update installed under dir (grype's layout:
// dir/6/vulnerability.db with its import.json). It never touches the network, and checks
// the file against the checksum recorded at install time. The database's age is not held
// against it: the report carries DBInfo.Built, and refreshing is the workflow's job.
func Open(dir string) (*DB, error) {
	cfg := installation.Config{DBRootDir: dir, ValidateChecksum: true}
	if _, err := os.Stat(cfg.DBFilePath()); err != nil {
		return nil, fmt.Errorf("no vulnerability database in %s (%v): run `kgci-supplychain vulndb update --dir %s` where the internet is reachable, or pass --vuln-db", dir, err, dir)
	}
	// No distribution client: the curator only needs one to download, which Open never does.
	cur, err := installation.NewCurator(cfg, nil)
	if err != nil {
		return nil, err
	}
	status := cur.Status()
	if status.Error != nil {
		return nil, fmt.Errorf("vulnerability database in %s is unusable: %w (refresh it with `kgci-supplychain vulndb update --dir %s`)", dir, status.Error, dir)
	}
	rdr, err := cur.Reader()
	if err != nil {
		return nil, fmt.Errorf("vulnerability database in %s: %w", dir, err)
	}
	return &DB{
		provider: v6.NewVulnerabilityProvider(rdr),
		info:     DBInfo{Dir: dir, Built: status.Built, SchemaVersion: status.SchemaVersion},
	}, nil
}

// Close releases the database.
func (db *DB) Close() error { return db.provider.Close() }

// distributionURL is where Update looks for the latest database (grype's listing); a
// variable so a test can point it at a loopback server.
var distributionURL = distribution.DefaultConfig().LatestURL

// Update downloads the latest database into dir (or keeps the current one when nothing
// newer is published) from grype's distribution site, replacing it only once the new one
// is complete and verified. ctx is only checked before starting: grype's client takes no
// context, and bounds the listing check (30 s) and the download (5 min) itself.
func Update(ctx context.Context, dir string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dcfg := distribution.DefaultConfig()
	dcfg.ID = clio.Identification{Name: "kgci"}
	dcfg.LatestURL = distributionURL
	// Without this grype only logs a failed check and reports "no update", which here would
	// pass off a network failure as an up-to-date database.
	dcfg.RequireUpdateCheck = true
	client, err := distribution.NewClient(dcfg)
	if err != nil {
		return err
	}
	icfg := installation.Config{
		DBRootDir:        dir,
		ValidateChecksum: true,
		// A database this old is replaced even when the listing has nothing newer to offer.
		ValidateAge:        true,
		MaxAllowedBuiltAge: 5 * 24 * time.Hour,
	}
	cur, err := installation.NewCurator(icfg, client)
	if err != nil {
		return err
	}
	if _, err := cur.Update(); err != nil {
		return fmt.Errorf("the vulnerability database could not be downloaded from %s into %s: %w", dcfg.LatestURL, dir, err)
	}
	if s := cur.Status(); s.Error != nil {
		return fmt.Errorf("the vulnerability database downloaded from %s into %s is unusable: %w", dcfg.LatestURL, dir, s.Error)
	}
	return nil
}

// matchers are grype's default matchers with the grype CLI's default settings: CPEs only
// for packages no ecosystem matcher claims, as CPE matching is where false positives come
// from.
func matchers() []match.Matcher {
	return matcher.NewDefaultMatchers(matcher.Config{
		Stock: stock.MatcherConfig{UseCPEs: true},
		Dpkg:  dpkg.MatcherConfig{MissingEpochStrategy: version.MissingEpochStrategyZero},
		Rpm:   rpm.MatcherConfig{MissingEpochStrategy: version.MissingEpochStrategyAuto},
	})
}

// Scan matches the packages of one image's SBOM and judges them against opt.
func (db *DB) Scan(ctx context.Context, service string, s *sbom.SBOM, opt Options) (*Report, error) {
	if s == nil {
		return nil, fmt.Errorf("vulnerability scan of %s: no SBOM", service)
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	report := &Report{Service: service, FailOn: opt.FailOn, DB: db.info}
	var active []Rule
	var rules []match.IgnoreRule
	for _, r := range opt.Ignore {
		if r.expired(now) {
			report.Expired = append(report.Expired, r)
			continue
		}
		active = append(active, r)
		// IncludeAliases: an exception written for a CVE also covers the GHSA (or distro
		// advisory) that is the same vulnerability.
		rules = append(rules, match.IgnoreRule{Vulnerability: r.ID, IncludeAliases: true, Reason: r.Reason,
			Package: match.IgnoreRulePackage{Name: r.Package}})
	}

	pkgs, pkgCtx, err := packages(s)
	if err != nil {
		return nil, fmt.Errorf("vulnerability scan of %s: %w", service, err)
	}
	vm := grype.VulnerabilityMatcher{VulnerabilityProvider: db.provider, Matchers: matchers(), IgnoreRules: rules}
	remaining, ignored, err := vm.FindMatchesContext(ctx, pkgs, pkgCtx)
	if err != nil {
		return nil, fmt.Errorf("vulnerability scan of %s: %w", service, err)
	}
	for _, m := range remaining.Sorted() {
		report.Findings = append(report.Findings, finding(m, nil))
	}
	for _, m := range ignored {
		var by *Rule
		if len(m.AppliedIgnoreRules) > 0 {
			if i := slices.Index(rules, m.AppliedIgnoreRules[0]); i >= 0 {
				by = &active[i]
			}
		}
		report.Findings = append(report.Findings, finding(m.Match, by))
	}
	slices.SortStableFunc(report.Findings, func(a, b Finding) int {
		return cmp.Or(
			cmp.Compare(severityOf(b.Severity), severityOf(a.Severity)),
			cmp.Compare(a.ID, b.ID),
			cmp.Compare(a.Package, b.Package),
			cmp.Compare(a.Version, b.Version),
		)
	})
	return report, nil
}

// packages turns the SBOM into grype's packages and context through grype's SBOM reader,
// the same path as `grype sbom:file.json`: grype exposes the distro context and the
// dropping of packages owned by an OS package (python files that dpkg installed, say,
// which Debian's own records cover) only there. The syft JSON round trip is lossless.
func packages(s *sbom.SBOM) ([]grypepkg.Package, grypepkg.Context, error) {
	doc, err := format.Encode(*s, syftjson.NewFormatEncoder())
	if err != nil {
		return nil, grypepkg.Context{}, fmt.Errorf("encoding the SBOM for grype: %w", err)
	}
	pkgs, pkgCtx, _, err := grypepkg.ProvideFromReader(bytes.NewReader(doc), grypepkg.ProviderConfig{})
	if err != nil {
		return nil, grypepkg.Context{}, fmt.Errorf("reading the SBOM into grype: %w", err)
	}
	if pkgCtx.DistroDetectionFailed {
		return nil, grypepkg.Context{}, errors.New("grype does not recognise the image's distro, so OS packages cannot be matched")
	}
	return pkgs, pkgCtx, nil
}

func finding(m match.Match, ignoredBy *Rule) Finding {
	f := Finding{
		ID:        m.Vulnerability.ID,
		Severity:  Unknown.String(),
		Package:   m.Package.Name,
		Version:   m.Package.Version,
		Type:      string(m.Package.Type),
		Namespace: m.Vulnerability.Namespace,
		IgnoredBy: ignoredBy,
	}
	if locs := m.Package.Locations.ToSlice(); len(locs) > 0 {
		f.Location = locs[0].RealPath
	}
	if m.Vulnerability.Fix.State == vulnerability.FixStateFixed {
		f.FixedIn = m.Vulnerability.Fix.Versions
	}
	if md := m.Vulnerability.Metadata; md != nil {
		f.Severity = severityOf(md.Severity).String()
		f.Description = md.Description
		if md.DataSource != "" {
			f.URLs = append(f.URLs, md.DataSource)
		}
		for _, u := range md.URLs {
			if !slices.Contains(f.URLs, u) {
				f.URLs = append(f.URLs, u)
			}
		}
	}
	return f
}

// Info names the opened database.
func (db *DB) Info() DBInfo { return db.info }
