package vulnscan

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Rule accepts one vulnerability, optionally only in one package, until a date.
type Rule struct {
	// ID is the vulnerability ID (a CVE also covers advisories that alias it, e.g. a GHSA).
	ID string `yaml:"id"`
	// Package limits the rule to the package of that name; empty means any package.
	Package string `yaml:"package,omitempty"`
	// Reason says why the risk is accepted; it is shown wherever the finding is.
	Reason string `yaml:"reason"`
	// Expires (YYYY-MM-DD) is the last day the rule ignores anything.
	Expires string `yaml:"expires"`
}

const dateLayout = "2006-01-02"

var ruleKeys = []string{"id", "package", "reason", "expires"}

// expired reports whether now is past the rule's last day (UTC). Expires was validated by
// LoadIgnore; a rule built in code with a bad date counts as expired, so it ignores nothing.
func (r Rule) expired(now time.Time) bool {
	d, err := time.Parse(dateLayout, r.Expires)
	return err != nil || !now.Before(d.AddDate(0, 0, 1))
}

// LoadIgnore reads an ignore file:
//
//	ignore:
//	  - id: CVE-2024-0001
//	    package: libfoo        # optional
//	    reason: not reachable: the backend never parses untrusted TIFFs
//	    expires: 2026-06-30
//
// Every entry needs an id, a reason and an expiry date, and unknown keys are errors, so a
// typo cannot silently widen or void an exception.
func LoadIgnore(path string) ([]Rule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ignore file: %w", err)
	}
	// Decoded by hand (yaml.v3 has no strict mode below the top level) so that every error
	// can name the entry it is about.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var entries []*yaml.Node
	if len(doc.Content) > 0 {
		top := doc.Content[0]
		if top.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s: line %d: want a mapping with one key, ignore: a list of {id, package, reason, expires}", path, top.Line)
		}
		for k := 0; k+1 < len(top.Content); k += 2 {
			key, val := top.Content[k], top.Content[k+1]
			if key.Value != "ignore" {
				return nil, fmt.Errorf("%s: line %d: unknown key %q: the file holds one key, ignore", path, key.Line, key.Value)
			}
			if val.Kind != yaml.SequenceNode && val.Tag != "!!null" {
				return nil, fmt.Errorf("%s: line %d: ignore must be a list of {id, package, reason, expires}", path, val.Line)
			}
			entries = val.Content
		}
	}
	rules := make([]Rule, 0, len(entries))
	for i, n := range entries {
		r, err := parseRule(n)
		if err != nil {
			entry := fmt.Sprintf("ignore[%d]", i)
			if r.ID != "" {
				entry += fmt.Sprintf(" (id %s)", r.ID)
			}
			return nil, fmt.Errorf("%s: %s, line %d: %w", path, entry, n.Line, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// parseRule decodes and checks one entry; the returned rule carries whatever ID was read,
// so errors can name it.
func parseRule(n *yaml.Node) (Rule, error) {
	var r Rule
	if n.Kind != yaml.MappingNode {
		return r, fmt.Errorf("not a mapping: write the entry as id/package/reason/expires keys")
	}
	var unknown []string
	for k := 0; k+1 < len(n.Content); k += 2 {
		if key := n.Content[k].Value; !slices.Contains(ruleKeys, key) {
			unknown = append(unknown, fmt.Sprintf("%q (line %d)", key, n.Content[k].Line))
		}
	}
	if err := n.Decode(&r); err != nil {
		return r, err
	}
	r.ID, r.Package = strings.TrimSpace(r.ID), strings.TrimSpace(r.Package)
	r.Reason, r.Expires = strings.TrimSpace(r.Reason), strings.TrimSpace(r.Expires)
	switch {
	case len(unknown) > 0:
		return r, fmt.Errorf("unknown key %s: valid keys are %s", strings.Join(unknown, ", "), strings.Join(ruleKeys, ", "))
	case r.ID == "":
		return r, fmt.Errorf("missing id: name the vulnerability, e.g. id: CVE-2024-0001")
	case r.Reason == "":
		return r, fmt.Errorf("missing reason: say why the risk is accepted, e.g. reason: not reachable, only used at build time")
	case r.Expires == "":
		return r, fmt.Errorf("missing expires: add the last day the exception holds, e.g. expires: %s", time.Now().AddDate(0, 3, 0).Format(dateLayout))
	}
	if _, err := time.Parse(dateLayout, r.Expires); err != nil {
		return r, fmt.Errorf("expires %q is not a date: write it as YYYY-MM-DD, e.g. expires: %s", r.Expires, time.Now().AddDate(0, 3, 0).Format(dateLayout))
	}
	return r, nil
}
