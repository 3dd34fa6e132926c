// Package policy holds what the architecture document requires of the
// deployment, as data (architecture.yaml), and checks compose files against
// it. The end-to-end checks compare the running stack with
// docker-compose.prod.yml; this compares docker-compose.prod.yml with the
// architecture, so a compose file that drifts (a capability kept, a network
// joined, a port published, log rotation dropped) fails although it is
// consistent with itself.
package policy

import (
	_ "embed"
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

//go:embed architecture.yaml
var architectureYAML []byte

// Policy is architecture.yaml.
type Policy struct {
	Services map[string]ServiceRule
	Logging  struct {
		Driver  string
		MaxSize string `yaml:"max-size"`
		MaxFile string `yaml:"max-file"`
	}
	Networks map[string]struct {
		Internal bool
		External bool
	}
	Volumes  []string
	TestMode struct {
		Ports         map[string][]string
		ExtraNetworks map[string][]string `yaml:"extra_networks"`
	} `yaml:"test_mode"`
	Deviations []struct {
		Requirement, Ours, Why string
	}
}

// ServiceRule is what one service must be.
type ServiceRule struct {
	ContainerName   string `yaml:"container_name"`
	Section         string
	User            string
	CapDropAll      bool `yaml:"cap_drop_all"`
	NoNewPrivileges bool `yaml:"no_new_privileges"`
	Networks        []string
	DependsOn       map[string]string `yaml:"depends_on"`
	Healthcheck     bool
	Volumes         []string
}

// Architecture returns the embedded policy.
func Architecture() (*Policy, error) { return Parse(architectureYAML) }

// Parse reads a policy; unknown keys are an error, so a typo cannot switch
// a requirement off.
func Parse(b []byte) (*Policy, error) {
	var p Policy
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("ci/policy/architecture.yaml: %w", err)
	}
	if len(p.Services) == 0 {
		return nil, fmt.Errorf("ci/policy/architecture.yaml: no services")
	}
	for _, d := range p.Deviations {
		if d.Requirement == "" || d.Ours == "" || d.Why == "" {
			return nil, fmt.Errorf("ci/policy/architecture.yaml: deviation %q needs requirement, ours and why", d.Requirement)
		}
	}
	return &p, nil
}

// Violation is one requirement a compose file breaks, with where to fix it.
type Violation struct {
	Requirement string // e.g. "backend: cap_drop ALL"
	File        string
	Key         string // e.g. services.backend.cap_drop
	Got         string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s: %s has %s (set %s in %s)", v.Requirement, v.Key, v.Got, v.Key, v.File)
}

// CheckNPM checks the production file (NPM mode): every service rule,
// log rotation, the networks and volumes, and no published port.
func (p *Policy) CheckNPM(c *dockerstack.Compose) []Violation {
	var vs []Violation
	add := func(req, key, got string) {
		vs = append(vs, Violation{Requirement: req, File: c.Path, Key: key, Got: got})
	}
	for _, name := range sortedKeys(p.Services) {
		r := p.Services[name]
		key := "services." + name
		s, ok := c.Services[name]
		if !ok {
			add(name+": the service exists ("+r.Section+")", key, "nothing")
			continue
		}
		if s.ContainerName != r.ContainerName {
			add(fmt.Sprintf("%s: container_name %s (underscores, as NPM addresses it)", name, r.ContainerName), key+".container_name", quote(s.ContainerName))
		}
		if r.User != "" && s.User != r.User {
			add(fmt.Sprintf("%s: runs as %s, non-root (%s)", name, r.User, r.Section), key+".user", quote(s.User))
		}
		if r.CapDropAll && !s.DropsAllCaps() {
			add(name+": cap_drop ALL (Docker Security Options)", key+".cap_drop", list(s.CapDrop))
		}
		if r.CapDropAll && len(s.CapAdd) > 0 {
			add(name+": no capability added back after cap_drop ALL", key+".cap_add", list(s.CapAdd))
		}
		if r.NoNewPrivileges && !s.NoNewPrivileges() {
			add(name+": security_opt no-new-privileges:true (Docker Security Options)", key+".security_opt", list(s.SecurityOpt))
		}
		if got := sorted(s.Networks); !slices.Equal(got, sorted(r.Networks)) {
			add(fmt.Sprintf("%s: networks exactly %s (Network Architecture)", name, list(r.Networks)), key+".networks", list(got))
		}
		for _, dep := range sortedKeys(r.DependsOn) {
			if got := s.DependsOn[dep]; got != r.DependsOn[dep] {
				add(fmt.Sprintf("%s: depends_on %s condition %s (Dependency Chain)", name, dep, r.DependsOn[dep]), key+".depends_on."+dep+".condition", quote(got))
			}
		}
		if r.Healthcheck && (s.Healthcheck == nil || s.Healthcheck.Disable || len(s.Healthcheck.Test) == 0) {
			add(name+": a health check (Health Checks)", key+".healthcheck", "none")
		}
		for _, v := range r.Volumes {
			if !slices.Contains(s.Volumes, v) {
				add(fmt.Sprintf("%s: volume %s (Volume Management)", name, v), key+".volumes", list(s.Volumes))
			}
		}
		if l := p.Logging; s.Logging == nil || s.Logging.Driver != l.Driver || s.Logging.Options["max-size"] != l.MaxSize || s.Logging.Options["max-file"] != l.MaxFile {
			got := "none"
			if s.Logging != nil {
				got = fmt.Sprintf("driver %q, max-size %q, max-file %q", s.Logging.Driver, s.Logging.Options["max-size"], s.Logging.Options["max-file"])
			}
			add(fmt.Sprintf("%s: log rotation %s, max-size %s, max-file %s (Log Rotation)", name, l.Driver, l.MaxSize, l.MaxFile), key+".logging", got)
		}
		if len(s.Ports) > 0 {
			add(name+": no published port in NPM mode; NPM reaches containers by name (Port Mapping Strategy)", key+".ports", list(s.Ports))
		}
	}
	for _, name := range sortedKeys(p.Networks) {
		want := p.Networks[name]
		n, ok := c.Networks[name]
		switch {
		case !ok:
			add("network "+name+" is declared", "networks."+name, "nothing")
		case want.Internal && !n.Internal:
			add("network "+name+" is internal: nothing outside it reaches the database", "networks."+name+".internal", "false")
		case want.External && !n.External:
			add("network "+name+" is external, shared with NPM", "networks."+name+".external", "false")
		}
	}
	for _, v := range p.Volumes {
		if _, ok := c.Volumes[v]; !ok {
			add("named volume "+v+" (Volume Management)", "volumes."+v, "nothing")
		}
	}
	return vs
}

// CheckTest checks the test overlay (test mode): exactly the documented
// ports, on localhost, and no network beyond the listed test-only ones.
func (p *Policy) CheckTest(overlay *dockerstack.Compose) []Violation {
	var vs []Violation
	names := map[string]bool{}
	for n := range p.Services {
		names[n] = true
	}
	for n := range overlay.Services {
		names[n] = true
	}
	for _, name := range sortedKeys(names) {
		s := overlay.Services[name]
		key := "services." + name
		want := p.TestMode.Ports[name]
		if got := sorted(s.Ports); !slices.Equal(got, sorted(want)) {
			vs = append(vs, Violation{Requirement: fmt.Sprintf("%s: test mode publishes exactly %s (Port Mapping Strategy)", name, list(want)), File: overlay.Path, Key: key + ".ports", Got: list(got)})
		}
		for _, n := range s.Networks {
			if !slices.Contains(p.TestMode.ExtraNetworks[name], n) {
				vs = append(vs, Violation{Requirement: fmt.Sprintf("%s: test mode joins no network beyond %s", name, list(p.TestMode.ExtraNetworks[name])), File: overlay.Path, Key: key + ".networks", Got: list(s.Networks)})
				break
			}
		}
	}
	return vs
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sorted(l []string) []string {
	out := slices.Clone(l)
	sort.Strings(out)
	return out
}

func list(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	return "[" + strings.Join(l, ", ") + "]"
}

func quote(s string) string {
	if s == "" {
		return "nothing"
	}
	return fmt.Sprintf("%q", s)
}
