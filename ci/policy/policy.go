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
	// FrontendHTTP is what the frontend must serve (env_injection and gzip.assets).
	FrontendHTTP struct {
		EnvConfigCacheControl []string `yaml:"env_config_cache_control"`
		GzipTypes             []string `yaml:"gzip_types"`
	} `yaml:"frontend_http"`
	// E2EStack is how kgci test-e2e's stack knowingly differs from test mode in what it
	// publishes; policy.runtime applies it, the deviations say why.
	E2EStack struct {
		AnyHostPort bool `yaml:"any_host_port"`
		Unpublished []string
	} `yaml:"e2e_stack"`
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
	// A run-time check with nothing to compare would pass vacuously.
	if len(p.FrontendHTTP.EnvConfigCacheControl) == 0 || len(p.FrontendHTTP.GzipTypes) == 0 {
		return nil, fmt.Errorf("ci/policy/architecture.yaml: frontend_http needs env_config_cache_control and gzip_types (env_injection and gzip.assets read them)")
	}
	for _, d := range p.Deviations {
		if d.Requirement == "" || d.Ours == "" || d.Why == "" {
			return nil, fmt.Errorf("ci/policy/architecture.yaml: deviation %q needs requirement, ours and why", d.Requirement)
		}
	}
	return &p, nil
}

// CacheControlMissing returns the directives of env_config_cache_control that a
// Cache-Control header of env-config.js lacks.
func (p *Policy) CacheControlMissing(header string) []string {
	have := map[string]bool{}
	for _, d := range strings.Split(header, ",") {
		name, _, _ := strings.Cut(d, "=")
		have[strings.ToLower(strings.TrimSpace(name))] = true
	}
	var missing []string
	for _, d := range p.FrontendHTTP.EnvConfigCacheControl {
		if !have[strings.ToLower(d)] {
			missing = append(missing, d)
		}
	}
	return missing
}

// Gzipped reports whether responses of a Content-Type must be gzipped (gzip_types).
func (p *Policy) Gzipped(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	return slices.Contains(p.FrontendHTTP.GzipTypes, strings.ToLower(strings.TrimSpace(mt)))
}

// Violation is one requirement a compose file or a running container breaks, with where
// to fix it.
type Violation struct {
	Requirement string // e.g. "backend: cap_drop ALL"
	File        string
	Key         string // e.g. services.backend.cap_drop
	Got         string
	// Seen is where Got was read when that is not Key itself: a running container's
	// inspect field (policy.runtime).
	Seen string
	// FileIsRight: File's Key asks for what the requirement wants, yet the container
	// differs, so the fix is in how the container was created, not in File.
	FileIsRight bool
}

func (v Violation) String() string {
	seen := v.Key
	if v.Seen != "" {
		seen = v.Seen
	}
	if v.FileIsRight {
		return fmt.Sprintf("%s: %s has %s, although %s in %s is right: the container was created otherwise (ci/dockerstack Stack.CreateArgs, or an override of the run)", v.Requirement, seen, v.Got, v.Key, v.File)
	}
	return fmt.Sprintf("%s: %s has %s (set %s in %s)", v.Requirement, seen, v.Got, v.Key, v.File)
}

// Running is one service as the policy judges it: a running container read from `docker
// inspect` (policy.runtime), or a compose service (fromCompose), so that each rule is
// written once for both. Networks and volumes carry their compose names.
type Running struct {
	Name        string   // the container's name, for messages
	Aliases     []string // names it answers to on every network it joins
	User        string
	CapDrop     []string
	CapAdd      []string
	SecurityOpt []string
	Networks    []string
	Ports       []Port
	Healthcheck []string // the probe, Docker's form; empty or ["NONE"]: none
	LogConfig   LogConfig
	Mounts      []string // named volumes as VOLUME:PATH, ":ro" appended when read-only
}

// LogConfig is a logging driver and its options.
type LogConfig struct {
	Driver  string
	Options map[string]string
}

// Port is one published port: [HostIP:][HostPort:]Container[/Proto].
type Port struct {
	HostIP, HostPort, Container, Proto string
}

// ParsePort reads compose's short port syntax ("127.0.0.1:8001:8000", "8001:8000",
// "8000/udp", "[::1]:8001:8000"); the protocol defaults to tcp.
func ParsePort(s string) Port {
	p := Port{Proto: "tcp"}
	if i := strings.LastIndex(s, "/"); i >= 0 {
		s, p.Proto = s[:i], s[i+1:]
	}
	i := strings.LastIndex(s, ":")
	if i < 0 {
		p.Container = s
		return p
	}
	rest := s[:i]
	p.Container = s[i+1:]
	if j := strings.LastIndex(rest, ":"); j >= 0 && !strings.HasSuffix(rest, "]") {
		p.HostIP, p.HostPort = strings.Trim(rest[:j], "[]"), rest[j+1:]
	} else {
		p.HostPort = rest
	}
	return p
}

func (p Port) String() string {
	s := p.Container
	if p.HostIP != "" || p.HostPort != "" {
		s = p.HostPort + ":" + s
	}
	if p.HostIP != "" {
		ip := p.HostIP
		if strings.Contains(ip, ":") {
			ip = "[" + ip + "]"
		}
		s = ip + ":" + s
	}
	if p.Proto != "" && p.Proto != "tcp" {
		s += "/" + p.Proto
	}
	return s
}

// samePorts compares published ports as sets; anyHostPort ignores the host port (Docker
// chose it).
func samePorts(got, want []Port, anyHostPort bool) bool {
	norm := func(l []Port) []string {
		var out []string
		for _, p := range l {
			if anyHostPort {
				p.HostPort = ""
			}
			out = append(out, p.String())
		}
		return sorted(out)
	}
	return slices.Equal(norm(got), norm(want))
}

func portList(l []Port) string {
	var s []string
	for _, p := range l {
		s = append(s, p.String())
	}
	return list(sorted(s))
}

func parsePorts(l []string) []Port {
	var out []Port
	for _, s := range l {
		out = append(out, ParsePort(s))
	}
	return out
}

// fromCompose is a compose service in the terms of Running: compose makes container_name
// resolvable on every network the service joins.
func fromCompose(s dockerstack.Service) Running {
	r := Running{
		Name: s.ContainerName, User: s.User, CapDrop: s.CapDrop, CapAdd: s.CapAdd,
		SecurityOpt: s.SecurityOpt, Networks: s.Networks, Ports: parsePorts(s.Ports), Mounts: s.Volumes,
	}
	if s.ContainerName != "" {
		r.Aliases = []string{s.ContainerName}
	}
	if s.Healthcheck != nil && !s.Healthcheck.Disable {
		r.Healthcheck = s.Healthcheck.Test
	}
	if s.Logging != nil {
		r.LogConfig = LogConfig{Driver: s.Logging.Driver, Options: s.Logging.Options}
	}
	return r
}

// FromInspect is a container as `docker inspect` shows it, in the terms of Running:
// networks and volumes named by the run (kgci-<run>-…) get their compose names back
// through the run's maps (compose name -> run name), and Aliases are the names the
// container answers to on every network it joins.
func FromInspect(info *dockerstack.ContainerInfo, networks, volumes map[string]string) Running {
	r := Running{
		Name: strings.TrimPrefix(info.Name, "/"), User: info.Config.User,
		CapDrop: info.HostConfig.CapDrop, CapAdd: info.HostConfig.CapAdd, SecurityOpt: info.HostConfig.SecurityOpt,
		LogConfig: LogConfig{Driver: info.HostConfig.LogConfig.Type, Options: info.HostConfig.LogConfig.Config},
	}
	if h := info.Config.Healthcheck; h != nil {
		r.Healthcheck = h.Test
	}
	composeName := func(m map[string]string, name string) string {
		for k, v := range m {
			if v == name {
				return k
			}
		}
		return name
	}
	for i, n := range sortedKeys(info.NetworkSettings.Networks) {
		r.Networks = append(r.Networks, composeName(networks, n))
		aliases := info.NetworkSettings.Networks[n].Aliases
		if i == 0 {
			r.Aliases = slices.Clone(aliases)
			continue
		}
		r.Aliases = slices.DeleteFunc(r.Aliases, func(a string) bool { return !slices.Contains(aliases, a) })
	}
	for _, port := range sortedKeys(info.NetworkSettings.Ports) {
		num, proto, _ := strings.Cut(port, "/")
		for _, b := range info.NetworkSettings.Ports[port] {
			r.Ports = append(r.Ports, Port{HostIP: b.HostIP, HostPort: b.HostPort, Container: num, Proto: proto})
		}
	}
	for _, m := range info.Mounts {
		if m.Type != "volume" {
			continue
		}
		v := composeName(volumes, m.Name) + ":" + m.Destination
		if !m.RW {
			v += ":ro"
		}
		r.Mounts = append(r.Mounts, v)
	}
	return r
}

// finding is a broken rule of one service: the key to fix, the inspect field that shows
// it at run time, the requirement and what was found.
type finding struct{ key, field, req, got string }

// serviceRules applies every rule of r that a compose file and a running container
// share; extraNets are networks the service may join beyond r.Networks (test mode).
func (p *Policy) serviceRules(name string, r ServiceRule, f Running, extraNets []string) []finding {
	var out []finding
	add := func(key, field, req, got string) {
		out = append(out, finding{key: "services." + name + "." + key, field: field, req: req, got: got})
	}
	if !slices.Contains(f.Aliases, r.ContainerName) {
		add("container_name", "network aliases", fmt.Sprintf("%s: container_name %s (Container Naming Convention: underscores, as NPM addresses it)", name, r.ContainerName), list(f.Aliases))
	}
	if r.User != "" && f.User != r.User {
		add("user", "Config.User", fmt.Sprintf("%s: runs as %s, non-root (%s)", name, r.User, r.Section), quote(f.User))
	}
	if r.CapDropAll && !(dockerstack.Service{CapDrop: f.CapDrop}).DropsAllCaps() {
		add("cap_drop", "HostConfig.CapDrop", name+": cap_drop ALL (Docker Security Options)", list(f.CapDrop))
	}
	if r.CapDropAll && len(f.CapAdd) > 0 {
		add("cap_add", "HostConfig.CapAdd", name+": no capability added back after cap_drop ALL", list(f.CapAdd))
	}
	if r.NoNewPrivileges && !(dockerstack.Service{SecurityOpt: f.SecurityOpt}).NoNewPrivileges() {
		add("security_opt", "HostConfig.SecurityOpt", name+": security_opt no-new-privileges:true (Docker Security Options)", list(f.SecurityOpt))
	}
	got := sorted(f.Networks)
	allowed := append(slices.Clone(r.Networks), extraNets...)
	joinsAll := true
	for _, n := range r.Networks {
		joinsAll = joinsAll && slices.Contains(got, n)
	}
	onlyAllowed := true
	for _, n := range got {
		onlyAllowed = onlyAllowed && slices.Contains(allowed, n)
	}
	if !joinsAll || !onlyAllowed || len(got) != len(slices.Compact(slices.Clone(got))) {
		req := fmt.Sprintf("%s: networks exactly %s (Network Architecture)", name, list(r.Networks))
		if len(extraNets) > 0 {
			req = fmt.Sprintf("%s: networks %s, in test mode also %s (Network Architecture)", name, list(r.Networks), list(extraNets))
		}
		add("networks", "NetworkSettings.Networks", req, list(got))
	}
	if r.Healthcheck && (len(f.Healthcheck) == 0 || f.Healthcheck[0] == "NONE") {
		add("healthcheck", "Config.Healthcheck", name+": a health check (Health Checks)", "none")
	}
	for _, v := range r.Volumes {
		if !slices.Contains(f.Mounts, v) {
			add("volumes", "Mounts", fmt.Sprintf("%s: volume %s (Volume Management)", name, v), list(f.Mounts))
		}
	}
	if l, g := p.Logging, f.LogConfig; g.Driver != l.Driver || g.Options["max-size"] != l.MaxSize || g.Options["max-file"] != l.MaxFile {
		got := "none"
		if g.Driver != "" || len(g.Options) > 0 {
			got = fmt.Sprintf("driver %q, max-size %q, max-file %q", g.Driver, g.Options["max-size"], g.Options["max-file"])
		}
		add("logging", "HostConfig.LogConfig", fmt.Sprintf("%s: log rotation %s, max-size %s, max-file %s (Log Rotation)", name, l.Driver, l.MaxSize, l.MaxFile), got)
	}
	return out
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
		for _, f := range p.serviceRules(name, r, fromCompose(s), nil) {
			add(f.req, f.key, f.got)
		}
		for _, dep := range sortedKeys(r.DependsOn) {
			if got := s.DependsOn[dep]; got != r.DependsOn[dep] {
				add(fmt.Sprintf("%s: depends_on %s condition %s (Dependency Chain)", name, dep, r.DependsOn[dep]), key+".depends_on."+dep+".condition", quote(got))
			}
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
			add(internalReq(name), "networks."+name+".internal", "false")
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

func internalReq(name string) string {
	return "network " + name + " is internal: nothing outside it reaches the database (Network Isolation)"
}

// CheckTest checks the test overlay (test mode): exactly the documented ports, on
// localhost, and no network beyond the listed test-only ones.
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
		if !samePorts(parsePorts(s.Ports), parsePorts(want), false) {
			vs = append(vs, Violation{Requirement: fmt.Sprintf("%s: test mode publishes exactly %s (Port Mapping Strategy)", name, list(want)), File: overlay.Path, Key: key + ".ports", Got: list(sorted(s.Ports))})
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

// Runtime is the running stack of kgci test-e2e, in the policy's terms.
type Runtime struct {
	// Compose is the file the stack was made from: where most fixes go.
	Compose *dockerstack.Compose
	// Services maps a compose service to its container; a missing one has none.
	Services map[string]Running
	// Networks maps a compose network to the run's network, as `docker network inspect`
	// shows it.
	Networks map[string]RunningNetwork
}

// RunningNetwork is one network of the run.
type RunningNetwork struct {
	Name     string
	Internal bool
}

// PortsFile is where kgci test-e2e's stack decides what it publishes (it does not read
// the test overlay): the fix for a published port policy.runtime rejects.
const PortsFile = "ci/dockerstack/stack.go"

// CheckRuntime judges the running containers against the policy, not against the compose
// file: the service rules as in CheckNPM (networks may include the test-mode extras), the
// test-mode ports as the e2e stack publishes them (E2EStack), and the internal network
// really internal. A violation whose compose key is right says so: then the container was
// created otherwise than the file says.
func (p *Policy) CheckRuntime(rt Runtime) []Violation {
	var vs []Violation
	path := rt.Compose.Path
	for _, name := range sortedKeys(p.Services) {
		r := p.Services[name]
		f, ok := rt.Services[name]
		if !ok {
			vs = append(vs, Violation{Requirement: name + ": a running container (" + r.Section + ")", File: path, Key: "services." + name, Got: "none", Seen: "the run"})
			continue
		}
		extra := p.TestMode.ExtraNetworks[name]
		wrongInFile := map[string]bool{}
		if s, ok := rt.Compose.Services[name]; ok {
			for _, cf := range p.serviceRules(name, r, fromCompose(s), extra) {
				wrongInFile[cf.key] = true
			}
		}
		for _, x := range p.serviceRules(name, r, f, extra) {
			vs = append(vs, Violation{Requirement: x.req, File: path, Key: x.key, Got: x.got, Seen: "container " + f.Name + " " + x.field, FileIsRight: !wrongInFile[x.key]})
		}
		want := p.TestMode.Ports[name]
		if slices.Contains(p.E2EStack.Unpublished, name) {
			want = nil
		}
		if !samePorts(f.Ports, parsePorts(want), p.E2EStack.AnyHostPort) {
			req := fmt.Sprintf("%s: test mode publishes exactly %s (Port Mapping Strategy)", name, list(want))
			if p.E2EStack.AnyHostPort {
				req = fmt.Sprintf("%s: publishes exactly %s, any host port (Port Mapping Strategy; kgci test-e2e lets Docker pick host ports: architecture.yaml e2e_stack)", name, list(want))
			}
			vs = append(vs, Violation{Requirement: req, File: PortsFile, Key: "containerPorts", Got: portList(f.Ports), Seen: "container " + f.Name + " NetworkSettings.Ports"})
		}
	}
	for _, name := range sortedKeys(p.Networks) {
		want := p.Networks[name]
		n, ok := rt.Networks[name]
		switch {
		case !ok:
			vs = append(vs, Violation{Requirement: "network " + name + " exists in the run", File: path, Key: "networks." + name, Got: "nothing", Seen: "the run"})
		case want.Internal && !n.Internal:
			vs = append(vs, Violation{Requirement: internalReq(name), File: path, Key: "networks." + name + ".internal", Got: "false", Seen: "network " + n.Name + " Internal", FileIsRight: rt.Compose.Networks[name].Internal})
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
