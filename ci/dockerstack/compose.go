package dockerstack

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ProdComposeFile is the deployment the e2e stack mirrors, relative to the repository root.
const ProdComposeFile = "docker-compose.prod.yml"

// TestOverlayFile is the test-mode overlay, beside ProdComposeFile.
const TestOverlayFile = "docker-compose.test.yml"

// Compose is the part of a compose file that decides how a service must run. Only what the
// stack applies or the checks verify is read; everything else in the file is ignored.
type Compose struct {
	Path     string
	Services map[string]Service
	Networks map[string]Network
	Volumes  map[string]Volume
}

// Volume is one entry under volumes:.
type Volume struct {
	Name     string
	External bool
}

// Service is one entry under services:.
type Service struct {
	Image         string
	ContainerName string      `yaml:"container_name"`
	User          string      `yaml:"user"`
	CapDrop       []string    `yaml:"cap_drop"`
	CapAdd        []string    `yaml:"cap_add"`
	SecurityOpt   []string    `yaml:"security_opt"`
	ReadOnly      bool        `yaml:"read_only"`
	StopSignal    string      `yaml:"stop_signal"`
	Networks      stringSet   `yaml:"networks"`
	Ports         portList    `yaml:"ports"`
	DependsOn     dependsOn   `yaml:"depends_on"`
	Healthcheck   *Healthtest `yaml:"healthcheck"`
	Logging       *struct {
		Driver  string
		Options map[string]string
	}
	Volumes []string `yaml:"volumes"`
}

// Network is one entry under networks:.
type Network struct {
	External bool
	Internal bool
	Name     string
}

// Healthtest is a compose healthcheck: Test is normalised to Docker's form
// (["CMD", ...] or ["CMD-SHELL", "..."]).
type Healthtest struct {
	Test        cmdOrShell
	Interval    string
	Timeout     string
	Retries     int
	StartPeriod string `yaml:"start_period"`
	Disable     bool
}

// stringSet accepts both the list and the mapping form of `networks:`.
type stringSet []string

func (s *stringSet) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*s = l
	case yaml.MappingNode:
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k := range m {
			*s = append(*s, k)
		}
		sort.Strings(*s)
	default:
		return fmt.Errorf("line %d: expected a list or a mapping", n.Line)
	}
	return nil
}

// portList accepts the short ("127.0.0.1:8080:8080") and the long (mapping) port syntax;
// the long form is rendered as [host_ip:]published:target[/protocol].
type portList []string

func (p *portList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: ports: expected a list", n.Line)
	}
	for _, it := range n.Content {
		if it.Kind == yaml.ScalarNode {
			*p = append(*p, it.Value)
			continue
		}
		var m struct {
			HostIP    string `yaml:"host_ip"`
			Published string
			Target    string
			Protocol  string
		}
		if err := it.Decode(&m); err != nil {
			return err
		}
		s := m.Published + ":" + m.Target
		if m.HostIP != "" {
			s = m.HostIP + ":" + s
		}
		if m.Protocol != "" {
			s += "/" + m.Protocol
		}
		*p = append(*p, s)
	}
	return nil
}

// dependsOn maps a dependency to its condition ("service_started" for the list form).
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = dependsOn{}
	switch n.Kind {
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, s := range l {
			(*d)[s] = "service_started"
		}
	case yaml.MappingNode:
		var m map[string]struct{ Condition string }
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			c := v.Condition
			if c == "" {
				c = "service_started"
			}
			(*d)[k] = c
		}
	default:
		return fmt.Errorf("line %d: expected a list or a mapping", n.Line)
	}
	return nil
}

// cmdOrShell accepts `test: "cmd string"` (CMD-SHELL) and the list form.
type cmdOrShell []string

func (c *cmdOrShell) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*c = []string{"CMD-SHELL", n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*c = l
	return nil
}

// LoadCompose reads a compose file.
func LoadCompose(path string) (*Compose, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read compose file: %w (run from the repository root, or pass --compose)", err)
	}
	return ParseCompose(path, b)
}

// ParseCompose parses compose YAML; path is only used in messages.
func ParseCompose(path string, b []byte) (*Compose, error) {
	var raw struct {
		Services map[string]Service
		Networks map[string]*Network
		Volumes  map[string]*Volume
	}
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(raw.Services) == 0 {
		return nil, fmt.Errorf("%s: no services", path)
	}
	c := &Compose{Path: path, Services: raw.Services, Networks: map[string]Network{}, Volumes: map[string]Volume{}}
	for k, v := range raw.Networks {
		if v == nil {
			v = &Network{}
		}
		c.Networks[k] = *v
	}
	for k, v := range raw.Volumes {
		if v == nil {
			v = &Volume{}
		}
		c.Volumes[k] = *v
	}
	return c, nil
}

// FindRepoFile looks for rel in dir and its parents, so that commands and tests work from
// any directory inside the repository.
func FindRepoFile(dir, rel string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(d, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("%s not found in %s or any parent directory; run from the repository", rel, dir)
		}
		d = parent
	}
}

// Service returns the named service or an error naming the file.
func (c *Compose) Service(name string) (Service, error) {
	s, ok := c.Services[name]
	if !ok {
		return Service{}, fmt.Errorf("%s has no service %q", c.Path, name)
	}
	return s, nil
}

// DropsAllCaps reports whether the service has cap_drop: [ALL].
func (s Service) DropsAllCaps() bool {
	for _, c := range s.CapDrop {
		if strings.EqualFold(c, "ALL") {
			return true
		}
	}
	return false
}

// NoNewPrivileges reports whether security_opt sets no-new-privileges (with or without :true).
func (s Service) NoNewPrivileges() bool {
	for _, o := range s.SecurityOpt {
		o = strings.ReplaceAll(strings.ToLower(o), "=", ":")
		if o == "no-new-privileges" || o == "no-new-privileges:true" {
			return true
		}
	}
	return false
}

// SecurityArgs turns the service's security settings into `docker create` flags, so the
// e2e stack runs with exactly what production runs with.
func (s Service) SecurityArgs() []string {
	var a []string
	for _, c := range s.CapDrop {
		a = append(a, "--cap-drop", c)
	}
	for _, c := range s.CapAdd {
		a = append(a, "--cap-add", c)
	}
	for _, o := range s.SecurityOpt {
		a = append(a, "--security-opt", o)
	}
	if s.ReadOnly {
		a = append(a, "--read-only")
	}
	if s.User != "" {
		a = append(a, "--user", s.User)
	}
	if s.StopSignal != "" {
		a = append(a, "--stop-signal", s.StopSignal)
	}
	if s.Logging != nil && s.Logging.Driver != "" {
		a = append(a, "--log-driver", s.Logging.Driver)
		keys := make([]string, 0, len(s.Logging.Options))
		for k := range s.Logging.Options {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			a = append(a, "--log-opt", k+"="+s.Logging.Options[k])
		}
	}
	return a
}

// HealthArgs turns a compose healthcheck into `docker create` flags. Compose's "$$" (a
// literal "$" for the container's shell) becomes "$".
func (h *Healthtest) HealthArgs() []string {
	if h == nil || h.Disable || len(h.Test) == 0 {
		return nil
	}
	var cmd string
	switch h.Test[0] {
	case "CMD-SHELL":
		cmd = strings.Join(h.Test[1:], " ")
	case "CMD":
		// --health-cmd always goes through a shell; quote each word for it.
		cmd = ShellQuote(h.Test[1:]...)
	case "NONE":
		return []string{"--no-healthcheck"}
	default:
		cmd = strings.Join(h.Test, " ")
	}
	a := []string{"--health-cmd", strings.ReplaceAll(cmd, "$$", "$")}
	if h.Interval != "" {
		a = append(a, "--health-interval", h.Interval)
	}
	if h.Timeout != "" {
		a = append(a, "--health-timeout", h.Timeout)
	}
	if h.StartPeriod != "" {
		a = append(a, "--health-start-period", h.StartPeriod)
	}
	if h.Retries > 0 {
		a = append(a, "--health-retries", fmt.Sprint(h.Retries))
	}
	return a
}

// ShellQuote quotes words for POSIX sh and joins them with spaces: a command line a
// shell splits back into exactly these words.
func ShellQuote(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.IndexFunc(w, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
		}) < 0 {
			q[i] = w
		} else {
			q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
