package dockerstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Service names, as in docker-compose.prod.yml, in start order (each waits for the one
// before it to be healthy, like compose's depends_on: condition: service_healthy).
const (
	Postgres = "postgres"
	Backend  = "backend"
	Frontend = "frontend"
)

// Order is the start order.
var Order = []string{Postgres, Backend, Frontend}

// LabelRun marks everything a run creates; Down and Leftovers find resources by it, so a
// run interrupted at any point can still be cleaned up.
const (
	LabelRun     = "org.kidney-genetics.kgci.run"
	LabelService = "org.kidney-genetics.kgci.service"
)

// Database credentials of the ephemeral PostgreSQL. The password is random per run.
const (
	DBUser = "kidney_user"
	DBName = "kidney_genetics"
)

// Ports inside the containers (ci/spec's BackendPort / FrontendPort).
var containerPorts = map[string]int{Backend: 8000, Frontend: 8080}

// postgresPort is PostgreSQL's; its first-start server listens on the socket only, so a
// TCP connection means the final server is up.
const postgresPort = 5432

// Override changes one service for a fault test.
type Override struct {
	Image string   // another image
	Env   []string // KEY=VALUE, after (so winning over) the stack's own
	Args  []string // extra `docker create` flags, after the compose-derived ones
	Cmd   []string // replaces the image's command
	// StartupTimeout, when set, bounds this service's wait instead of Options.StartupTimeout.
	StartupTimeout time.Duration
}

// Options configure Up.
type Options struct {
	Docker  *Docker
	Compose *Compose // security options, networks, aliases, postgres healthcheck
	RunID   string   // random when empty
	Images  map[string]string
	// StartupTimeout bounds the wait for each service to become healthy.
	StartupTimeout time.Duration
	// ProbeEvery is how often WaitHealthy runs a starting service's health check itself
	// (default 1 s); a service is also probed the moment it first answers on its port (HTTP
	// on the published one; PostgreSQL's on the run's network). The containers keep their production intervals (the images' and
	// the compose file's) for Docker's own probes.
	ProbeEvery time.Duration
	Override   map[string]Override
	Progress   io.Writer // one line per step; nil for silence
	// Started, when set, is told each service whose container has started (its port
	// published), before Up waits for it to be healthy, so that callers can start work
	// that needs only that much of the stack (from Up's goroutine: it must not block).
	Started func(s *Stack, svc string)
}

// Stack is one run's topology. Fields are filled in as services start, so a partly started
// stack (Up returned an error) still says what is running.
type Stack struct {
	D      *Docker
	RunID  string
	Prefix string
	// Networks maps the compose network name to this run's network.
	Networks map[string]string
	Volumes  map[string]string
	// Containers maps service to container name, for every service that was created.
	Containers map[string]string
	// Aliases maps service to its compose container_name, which every other container of
	// the run resolves (nginx.prod.conf names kidney_genetics_backend).
	Aliases map[string]string
	// URLs maps backend and frontend to http://127.0.0.1:PORT.
	URLs map[string]string
	// Startup records, per service, how long it took to become healthy and why it did not.
	Startup    map[string]StartupResult
	DBPassword string
	Images     map[string]string
	Compose    *Compose
	opts       Options

	mu sync.Mutex
	// settled: closed when the service is healthy, or will not be (Settled).
	settled map[string]chan struct{}
	// launched: closed when the service's container has started, or will not (Launched).
	launched map[string]chan struct{}
	// created: the services whose container exists but may not have started yet (Up
	// creates the later ones while PostgreSQL initialises, as compose does).
	created map[string]*creation
	watch   *watch
}

// creation is one service's `docker create` (and network connects), done ahead of its start.
type creation struct {
	done chan struct{}
	err  error
}

// StartupResult is how one service's start went.
type StartupResult struct {
	Healthy  bool
	Started  time.Time // when the service could start (the one before it was healthy)
	Duration time.Duration
	Err      *StartError
}

// Why a service did not become healthy.
const (
	Exited        = "exited"         // the container stopped
	ProbeFails    = "probe_fails"    // it serves, but its health probe keeps failing
	NeverHealthy  = "never_healthy"  // the bound passed
	NoHealthcheck = "no_healthcheck" // nothing to wait for
)

// StartError says why a service did not become healthy, with the evidence.
type StartError struct {
	Service   string
	Container string
	Kind      string // Exited, ProbeFails, NeverHealthy, NoHealthcheck
	Reason    string
	HealthLog string // last health probe outputs
	Logs      string // container log tail
}

func (e *StartError) Error() string {
	return fmt.Sprintf("%s (container %s) did not become healthy: %s", e.Service, e.Container, e.Reason)
}

// Details is the evidence, for reports.
func (e *StartError) Details() string {
	var b strings.Builder
	if e.HealthLog != "" {
		fmt.Fprintf(&b, "last health probes:\n%s\n", e.HealthLog)
	}
	if e.Logs != "" {
		fmt.Fprintf(&b, "container log (tail):\n%s", e.Logs)
	}
	return b.String()
}

// NewRunID returns a short random id; names stay readable in `docker ps`.
func NewRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Stack) progress(format string, a ...any) {
	if s.opts.Progress != nil {
		fmt.Fprintf(s.opts.Progress, format+"\n", a...)
	}
}

// Name returns this run's name for a resource.
func (s *Stack) Name(suffix string) string { return s.Prefix + suffix }

func (s *Stack) labels(service string) []string {
	a := []string{"--label", LabelRun + "=" + s.RunID}
	if service != "" {
		a = append(a, "--label", LabelService+"="+service)
	}
	return a
}

// Up creates networks, volume and containers and starts the services in order, each one
// only after the previous is healthy. On error the returned Stack is still valid: it holds
// what was started (for checks and logs) and must be passed to Down.
func Up(ctx context.Context, o Options) (*Stack, error) {
	s, err := New(o)
	if err != nil {
		return s, err
	}
	return s, s.Start(ctx)
}

// New checks the options and describes the run's stack without starting anything, so
// that callers can hand the Stack to work that waits for its services (Settled) while
// Start brings them up. A non-nil Stack must be passed to Down.
func New(o Options) (*Stack, error) {
	if o.Docker == nil {
		o.Docker = FromEnv()
	}
	if o.Compose == nil {
		return nil, errors.New("dockerstack: Options.Compose is required (load docker-compose.prod.yml)")
	}
	if o.RunID == "" {
		o.RunID = NewRunID()
	}
	if o.StartupTimeout <= 0 {
		o.StartupTimeout = 60 * time.Second
	}
	if o.ProbeEvery <= 0 {
		o.ProbeEvery = time.Second
	}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	s := &Stack{
		D: o.Docker, RunID: o.RunID, Prefix: "kgci-" + o.RunID + "-",
		Networks: map[string]string{}, Volumes: map[string]string{},
		Containers: map[string]string{}, Aliases: map[string]string{}, URLs: map[string]string{},
		Startup: map[string]StartupResult{}, DBPassword: hex.EncodeToString(pw),
		Images: map[string]string{}, Compose: o.Compose, opts: o,
		settled: map[string]chan struct{}{}, launched: map[string]chan struct{}{},
	}
	for k, v := range o.Images {
		s.Images[k] = v
	}
	for _, svc := range Order {
		s.settled[svc] = make(chan struct{})
		s.launched[svc] = make(chan struct{})
	}
	if err := s.validate(); err != nil {
		// Start will not run: nothing may wait for these services.
		for _, svc := range Order {
			s.settle(svc)
		}
		return s, err
	}
	return s, nil
}

func (s *Stack) validate() error {
	for _, svc := range Order {
		if _, err := s.Compose.Service(svc); err != nil {
			return err
		}
		if s.image(svc) == "" {
			return fmt.Errorf("no image given for service %s", svc)
		}
	}
	return nil
}

// Start brings up what New described; on error what did start stays for checks and logs.
// Every service is settled (Settled) when Start returns, whether or not it came up.
func (s *Stack) Start(ctx context.Context) error {
	defer func() {
		for _, svc := range Order {
			s.settle(svc)
		}
	}()
	s.watch = startWatch(s.D, s.RunID)
	if err := s.createResources(ctx); err != nil {
		return err
	}
	// Like compose: every container is created up front, then each starts when the one
	// before it is healthy. The later ones are created while PostgreSQL initialises (once
	// its container has started, not once it is healthy: created then, the backend's
	// create and network connects, 0.2-0.4 s, were on the path that the run waits on);
	// Start waits for them before it returns, so that Down finds everything they created.
	s.created = map[string]*creation{}
	var creating sync.WaitGroup
	defer creating.Wait()
	s.createAhead(ctx, Order[0], &creating)
	for i, svc := range Order {
		t0 := time.Now()
		if err := s.launch(ctx, svc); err != nil {
			return err
		}
		if i == 0 {
			for _, next := range Order[1:] {
				s.createAhead(ctx, next, &creating)
			}
		}
		if err := s.awaitStartup(ctx, svc, t0); err != nil {
			return err
		}
	}
	return nil
}

// createAhead creates the service's container in the background; launch waits for
// it.
func (s *Stack) createAhead(ctx context.Context, svc string, wg *sync.WaitGroup) {
	c := &creation{done: make(chan struct{})}
	s.created[svc] = c
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.err = s.createContainer(ctx, svc)
		close(c.done)
	}()
}

// Settled is closed once the service is healthy or Start gave up on it; StartupOf then
// says which. Work that needs a service waits for it here instead of for the whole
// stack.
func (s *Stack) Settled(svc string) <-chan struct{} { return signal(s.settled, svc) }

// Launched is closed once the service's container has started (`docker start` returned
// and its port is known), or Start gave up before starting it. Work that starts
// containers of its own waits for every service here: dockerd sets up one container's
// networks at a time, and a probe container started beside the frontend's `docker start`
// delayed that start, the last on the path that a run waits on, by 0.8 s.
func (s *Stack) Launched(svc string) <-chan struct{} { return signal(s.launched, svc) }

// signal is the service's channel, or a closed one for a service the stack does not have:
// nothing may wait for it.
func signal(m map[string]chan struct{}, svc string) <-chan struct{} {
	if ch, ok := m[svc]; ok {
		return ch
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}

// settle closes the service's Settled, and its Launched if it never started.
func (s *Stack) settle(svc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	closeOnce(s.launched[svc])
	closeOnce(s.settled[svc])
}

func (s *Stack) markLaunched(svc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	closeOnce(s.launched[svc])
}

func closeOnce(ch chan struct{}) {
	if ch == nil {
		return
	}
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// Container is the service's container, once Start has started it. Like URL and
// StartupOf, it may be called while Start is still bringing up other services.
func (s *Stack) Container(svc string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.Containers[svc]
	return c, ok
}

// URL is http://127.0.0.1:PORT of a started backend or frontend ("" before).
func (s *Stack) URL(svc string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.URLs[svc]
}

// StartupOf is how the service's start went, once it is settled.
func (s *Stack) StartupOf(svc string) (StartupResult, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.Startup[svc]
	return r, ok
}

// Alias is the name every container of the run resolves the service by (its compose
// container_name).
func (s *Stack) Alias(svc string) string { return s.alias(svc) }

func (s *Stack) image(svc string) string {
	if ov, ok := s.opts.Override[svc]; ok && ov.Image != "" {
		return ov.Image
	}
	return s.Images[svc]
}

// createResources creates the run's networks and named volumes, all at once: each is an
// independent engine call (iptables rules for a network) of about 0.2 s.
func (s *Stack) createResources(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for k, n := range s.Compose.Networks {
		g.Go(func() error {
			name := s.Name(k)
			args := append([]string{"network", "create"}, s.labels("")...)
			// An external network (npm_proxy_network) is an ordinary bridge that NPM shares;
			// internal: true is what keeps the database unreachable from it.
			if n.Internal {
				args = append(args, "--internal")
			}
			args = append(args, name)
			if _, err := s.D.Run(gctx, args...); err != nil {
				return err
			}
			s.mu.Lock()
			s.Networks[k] = name
			s.mu.Unlock()
			return nil
		})
	}
	for _, svc := range Order {
		for _, v := range s.Compose.Services[svc].Volumes {
			if src, ok := namedVolume(v); ok {
				g.Go(func() error { _, err := s.volume(gctx, src); return err })
			}
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	s.progress("networks: %s", strings.Join(mapValues(s.Networks), ", "))
	return nil
}

// namedVolume is the volume name of a compose volume entry; bind mounts of the host's
// files (./x, /x) have no place in the test stack.
func namedVolume(v string) (string, bool) {
	src, _, ok := strings.Cut(v, ":")
	if !ok || strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
		return "", false
	}
	return src, true
}

// InternalNetwork is the run's network for the compose network marked internal: true.
func (s *Stack) InternalNetwork() string { return s.networkWhere(true) }

// ProxyNetwork is the run's network that stands for npm_proxy_network (not internal).
func (s *Stack) ProxyNetwork() string { return s.networkWhere(false) }

func (s *Stack) networkWhere(internal bool) string {
	for k, n := range s.Compose.Networks {
		if n.Internal == internal {
			return s.Networks[k]
		}
	}
	return ""
}

func (s *Stack) serviceEnv(svc string) []string {
	switch svc {
	case Postgres:
		return []string{"POSTGRES_USER=" + DBUser, "POSTGRES_PASSWORD=" + s.DBPassword, "POSTGRES_DB=" + DBName}
	case Backend:
		return []string{
			"DATABASE_URL=" + s.DatabaseURL(),
			"LOG_LEVEL=info",
			// The default (30 s) would hide a broken database behind a long wait.
			"DB_CONNECT_TIMEOUT=20",
		}
	}
	return nil
}

// DatabaseURL is what the backend gets: the postgres container by its production alias.
func (s *Stack) DatabaseURL() string {
	return fmt.Sprintf("postgresql://%s:%s@%s:5432/%s", DBUser, s.DBPassword, s.alias(Postgres), DBName)
}

func (s *Stack) alias(svc string) string {
	c := s.Compose.Services[svc]
	if c.ContainerName != "" {
		return c.ContainerName
	}
	return svc
}

// CreateArgs are the `docker create` arguments for a service (without the image and
// command), exported for tests that pin the translation of the compose file.
func (s *Stack) CreateArgs(ctx context.Context, svc string) ([]string, error) {
	c, err := s.Compose.Service(svc)
	if err != nil {
		return nil, err
	}
	if len(c.Networks) == 0 {
		return nil, fmt.Errorf("%s: service %s is on no network", s.Compose.Path, svc)
	}
	first, ok := s.Networks[c.Networks[0]]
	if !ok {
		return nil, fmt.Errorf("%s: service %s uses network %q, which is not declared under networks:", s.Compose.Path, svc, c.Networks[0])
	}
	args := []string{"create", "--name", s.Name(svc), "--network", first, "--network-alias", s.alias(svc)}
	args = append(args, s.labels(svc)...)
	args = append(args, c.SecurityArgs()...)
	for _, v := range c.Volumes {
		src, ok := namedVolume(v)
		if !ok {
			continue
		}
		_, dst, _ := strings.Cut(v, ":")
		vol, err := s.volume(ctx, src)
		if err != nil {
			return nil, err
		}
		args = append(args, "-v", vol+":"+dst)
	}
	for _, e := range s.serviceEnv(svc) {
		args = append(args, "-e", e)
	}
	if p, ok := containerPorts[svc]; ok {
		// Loopback only, random host port: parallel runs never clash and nothing is
		// reachable from outside the machine.
		args = append(args, "-p", fmt.Sprintf("127.0.0.1::%d", p))
	}
	img, err := s.D.InspectImage(ctx, s.image(svc))
	if err != nil {
		return nil, fmt.Errorf("image for %s: %w", svc, err)
	}
	if img.Config.Healthcheck == nil || len(img.Config.Healthcheck.Test) == 0 || img.Config.Healthcheck.Test[0] == "NONE" {
		// Base images (postgres) have no HEALTHCHECK; the compose file's applies.
		args = append(args, c.Healthcheck.HealthArgs()...)
	}
	ov := s.opts.Override[svc]
	for _, e := range ov.Env {
		args = append(args, "-e", e)
	}
	args = append(args, ov.Args...)
	return args, nil
}

func (s *Stack) volume(ctx context.Context, name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.Volumes[name]; ok {
		return v, nil
	}
	v := s.Name(name)
	args := append([]string{"volume", "create"}, s.labels("")...)
	if _, err := s.D.Run(ctx, append(args, v)...); err != nil {
		return "", err
	}
	s.Volumes[name] = v
	return v, nil
}

// createContainer creates a service's container on all its networks, not started.
func (s *Stack) createContainer(ctx context.Context, svc string) error {
	args, err := s.CreateArgs(ctx, svc)
	if err != nil {
		return err
	}
	args = append(args, s.image(svc))
	args = append(args, s.opts.Override[svc].Cmd...)
	name := s.Name(svc)
	if _, err := s.D.Run(ctx, args...); err != nil {
		return err
	}
	c := s.Compose.Services[svc]
	for _, n := range c.Networks[1:] {
		net, ok := s.Networks[n]
		if !ok {
			return fmt.Errorf("%s: service %s uses network %q, which is not declared under networks:", s.Compose.Path, svc, n)
		}
		if _, err := s.D.Run(ctx, "network", "connect", "--alias", s.alias(svc), net, name); err != nil {
			return err
		}
	}
	return nil
}

// launch starts the service's container once it is created, and learns its URL.
func (s *Stack) launch(ctx context.Context, svc string) error {
	c := s.created[svc]
	select {
	case <-c.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if c.err != nil {
		return c.err
	}
	name := s.Name(svc)
	s.mu.Lock()
	s.Containers[svc] = name
	s.Aliases[svc] = s.alias(svc)
	s.mu.Unlock()
	if _, err := s.D.Run(ctx, "start", name); err != nil {
		return err
	}
	if p, ok := containerPorts[svc]; ok {
		hp, err := s.HostPort(ctx, name, p)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.URLs[svc] = "http://" + hp
		s.mu.Unlock()
	}
	if s.opts.Started != nil {
		s.opts.Started(s, svc)
	}
	s.markLaunched(svc)
	return nil
}

// awaitStartup waits for the launched service to be healthy and records how its start
// went. A service's time counts from t0, the moment it could start (the one before it
// was healthy), whether or not its container was created earlier.
func (s *Stack) awaitStartup(ctx context.Context, svc string, t0 time.Time) error {
	name := s.Name(svc)
	bound := s.opts.StartupTimeout
	if b := s.opts.Override[svc].StartupTimeout; b > 0 {
		bound = b
	}
	werr := s.WaitHealthy(ctx, svc, bound)
	res := StartupResult{Healthy: werr == nil, Started: t0, Duration: time.Since(t0)}
	if werr != nil {
		var se *StartError
		if !errors.As(werr, &se) {
			return werr
		}
		res.Err = se
	}
	s.mu.Lock()
	s.Startup[svc] = res
	s.mu.Unlock()
	if werr != nil {
		return werr
	}
	s.progress("%-9s healthy in %.1fs (%s)", svc, res.Duration.Seconds(), name)
	s.settle(svc)
	return nil
}

// HostPort returns 127.0.0.1:PORT published for the container's port.
func (s *Stack) HostPort(ctx context.Context, container string, port int) (string, error) {
	out, err := s.D.Run(ctx, "port", container, fmt.Sprintf("%d/tcp", port))
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "127.0.0.1:") {
			return l, nil
		}
	}
	return "", fmt.Errorf("container %s: port %d is not published on 127.0.0.1 (docker port: %q)", container, port, out)
}

// WaitHealthy waits until the service's health check passes: the container's own
// HEALTHCHECK (the image's, or the compose file's), run inside it as Docker runs it. It
// fails early, with the evidence, when the container exits, or when the service already
// answers HTTP on its published port while its health check keeps failing (a wrong probe
// fails in seconds, not at the bound).
//
// kgci runs the check itself, while it waits, instead of giving the containers a 1 s
// interval: Debian's Docker 20.10 has no --health-start-interval, so Docker went on
// probing every second for the whole run, and each probe costs about 150 ms of CPU (the
// engine, runc, the probe's own process): 14% of a test-e2e run's CPU. Docker's own
// probes keep the production intervals; a "healthy" from one of them also ends the wait.
func (s *Stack) WaitHealthy(ctx context.Context, svc string, bound time.Duration) error {
	name := s.Containers[svc]
	deadline := time.Now().Add(bound)
	var probes []ProbeResult
	var answeredAt time.Time
	// Like Docker's, the first probe is one interval after the start, unless the service
	// answers HTTP before that.
	probeAt := time.Now().Add(s.opts.ProbeEvery)
	fail := func(kind, reason string) error {
		se := &StartError{Service: svc, Container: name, Kind: kind, Reason: reason, HealthLog: probeLog(probes)}
		lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		se.Logs, _ = s.D.Logs(lctx, name, 60)
		return se
	}
	u := s.URL(svc)
	var info *ContainerInfo
	firstAnswer, woken := false, true
	for {
		changed := s.watch.changed(name)
		// Inspected at the start, when an event came, and each time when there are no
		// events: otherwise the probe's own result is all that can have changed, and a
		// docker CLI start costs about 60 ms of CPU.
		if woken || changed == nil {
			var err error
			if info, err = s.D.Inspect(ctx, name); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return err
			}
		}
		woken = false
		st := info.State
		switch {
		case !st.Running && st.Status != "created" && st.Status != "restarting":
			r := fmt.Sprintf("container %s with exit code %d", st.Status, st.ExitCode)
			if st.OOMKilled {
				r += " (killed: out of memory)"
			}
			if st.Error != "" {
				r += ": " + st.Error
			}
			return fail(Exited, r+"; its log below says why")
		case st.Health != nil && st.Health.Status == "healthy":
			return nil
		}
		if _, err := ProbeCommand(info.Config.Healthcheck); err != nil {
			if errors.Is(err, ErrNoHealthcheck) {
				return fail(NoHealthcheck, "the container has no health check; the image needs a HEALTHCHECK (ci/spec Config.Healthcheck) or the compose service a healthcheck:")
			}
			return fail(NoHealthcheck, err.Error())
		}
		if st.Running && (firstAnswer || !time.Now().Before(probeAt)) {
			firstAnswer = false
			p, err := s.D.Probe(ctx, name, info.Config.Healthcheck)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return err
			}
			probes = append(probes, p)
			if p.OK() {
				return nil
			}
			// Only probes that ran after the service answered HTTP count: earlier ones
			// failed because it was still starting.
			if u != "" && !answeredAt.IsZero() {
				if n := failingStreak(probes, answeredAt); n >= 3 {
					return fail(ProbeFails, fmt.Sprintf("it answers HTTP on %s, but its health probe %s failed %d times in a row after that: the probe (path, port or tool) is wrong, or the service reports itself unhealthy", u, probeString(info), n))
				}
			}
			// A failed probe may be an exit: ask Docker before the next one.
			woken = true
		}
		if time.Now().After(deadline) {
			return fail(NeverHealthy, fmt.Sprintf("not healthy after %s: its health probe %s never succeeded (%d tries)", bound, probeString(info), len(probes)))
		}
		if !time.Now().Before(probeAt) { // probed just now, or not running yet
			probeAt = time.Now().Add(s.opts.ProbeEvery)
		}
		// Until the next probe is due: an exit wakes the wait at once (the run's events),
		// and the service's port is asked every 100 ms, which starts no process, so that
		// its first answer is probed at once.
		answers := s.answers(svc, u, info)
	wait:
		for {
			tick := time.Until(probeAt)
			if tick <= 0 {
				break
			}
			poll := answers != nil && answeredAt.IsZero()
			if poll {
				tick = min(tick, 100*time.Millisecond)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-changed:
				woken = true
				break wait
			case <-time.After(tick):
			}
			if poll && answers(ctx) {
				answeredAt, firstAnswer = time.Now(), true
				break
			}
		}
	}
}

// answers is a cheap sign that the service is up, or nil: an HTTP answer on its published
// port, or for PostgreSQL a TCP connection to its address on the run's network (reachable
// from the engine's host; elsewhere it never answers and the probes keep their pace).
func (s *Stack) answers(svc, u string, info *ContainerInfo) func(context.Context) bool {
	if u != "" {
		return func(ctx context.Context) bool { return answersHTTP(ctx, u) }
	}
	if svc != Postgres {
		return nil
	}
	for _, n := range info.NetworkSettings.Networks {
		if n.IPAddress == "" {
			continue
		}
		addr := net.JoinHostPort(n.IPAddress, fmt.Sprint(postgresPort))
		return func(ctx context.Context) bool {
			d := net.Dialer{Timeout: 200 * time.Millisecond}
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return false
			}
			c.Close()
			return true
		}
	}
	return nil
}

func probeString(info *ContainerInfo) string {
	if info.Config.Healthcheck == nil {
		return "(none)"
	}
	return fmt.Sprintf("%q", info.Config.Healthcheck.Test)
}

// failingStreak counts the failed probes at the end of the log that started after since.
func failingStreak(probes []ProbeResult, since time.Time) int {
	n := 0
	for i := len(probes) - 1; i >= 0 && !probes[i].OK() && probes[i].Start.After(since); i-- {
		n++
	}
	return n
}

// probeLog is the last three probes, for the report.
func probeLog(probes []ProbeResult) string {
	var b strings.Builder
	for _, p := range probes[max(len(probes)-3, 0):] {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	return strings.TrimRight(b.String(), "\n")
}

// healthLog is the last three of Docker's own probes, for the services' log files.
func healthLog(h *Health) string {
	var b strings.Builder
	for _, l := range h.Log[max(len(h.Log)-3, 0):] {
		fmt.Fprintf(&b, "  exit %d: %s\n", l.ExitCode, strings.TrimSpace(l.Output))
	}
	return strings.TrimRight(b.String(), "\n")
}

func answersHTTP(ctx context.Context, base string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// StopService stops a service's container (the destructive checks' "database down").
func (s *Stack) StopService(ctx context.Context, svc string, grace time.Duration) error {
	_, err := s.D.Run(ctx, "stop", "--time", fmt.Sprint(int(grace.Seconds())), s.Containers[svc])
	return err
}

// StartService starts a stopped service again and waits for it to be healthy.
func (s *Stack) StartService(ctx context.Context, svc string, bound time.Duration) error {
	if _, err := s.D.Run(ctx, "start", s.Containers[svc]); err != nil {
		return err
	}
	return s.WaitHealthy(ctx, svc, bound)
}

// RunArgs returns `docker run` flags that label a throwaway container as part of this run,
// so Down removes it even if its caller never got to.
func (s *Stack) RunArgs(name, service string) []string {
	return append([]string{"--name", s.Name(name)}, s.labels(service)...)
}

// Down removes every container, network and volume of the run. It uses its own context
// (the caller's may be cancelled by Ctrl-C) and reports what it could not remove.
func (s *Stack) Down(timeout time.Duration) error {
	if s == nil {
		return nil
	}
	s.watch.close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return RemoveRun(ctx, s.D, s.RunID)
}

// RemoveRun removes everything labelled with runID.
func RemoveRun(ctx context.Context, d *Docker, runID string) error {
	var errs []error
	filter := "label=" + LabelRun + "=" + runID
	if ids, err := d.Run(ctx, "ps", "-aq", "--filter", filter); err != nil {
		errs = append(errs, err)
	} else if ids != "" {
		if _, err := d.Run(ctx, append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...); err != nil {
			errs = append(errs, err)
		}
	}
	// Networks and volumes only had to wait for the containers; not for each other.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, kind := range [][]string{{"network", "rm"}, {"volume", "rm", "-f"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids, err := d.Run(ctx, kind[0], "ls", "-q", "--filter", filter)
			if err == nil && ids != "" {
				_, err = d.Run(ctx, append(kind, strings.Fields(ids)...)...)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup of run %s incomplete: %w\nremove by hand: docker rm -f $(docker ps -aq --filter %s); docker network rm $(docker network ls -q --filter %s); docker volume rm $(docker volume ls -q --filter %s)", runID, err, filter, filter, filter)
	}
	return nil
}

// Leftovers lists containers, networks and volumes whose name starts with the run's
// prefix or that carry its label: after Down it must be empty.
func Leftovers(ctx context.Context, d *Docker, runID string) ([]string, error) {
	prefix := "kgci-" + runID + "-"
	var left []string
	for _, q := range [][]string{
		{"ps", "-a", "--format", "container {{.Names}} {{.Label \"" + LabelRun + "\"}}"},
		{"network", "ls", "--format", "network {{.Name}} {{.Label \"" + LabelRun + "\"}}"},
		{"volume", "ls", "--format", "volume {{.Name}} {{.Label \"" + LabelRun + "\"}}"},
	} {
		out, err := d.Run(ctx, q...)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			if strings.HasPrefix(f[1], prefix) || (len(f) > 2 && f[2] == runID) {
				left = append(left, f[0]+" "+f[1])
			}
		}
	}
	return left, nil
}

// SaveLogs writes every container of the run to dir/<service>.log (plus its state and
// health probes), for the report and for whoever debugs a red run.
func (s *Stack) SaveLogs(dir string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out, err := s.D.Run(ctx, "ps", "-a", "--filter", "label="+LabelRun+"="+s.RunID,
		"--format", "{{.Names}}\t{{.Label \""+LabelService+"\"}}")
	if err != nil {
		return nil, err
	}
	var written []string
	for _, l := range strings.Split(out, "\n") {
		name, svc, _ := strings.Cut(strings.TrimSpace(l), "\t")
		if name == "" {
			continue
		}
		file := svc
		if file == "" || file != strings.TrimPrefix(name, s.Prefix) {
			file = strings.TrimPrefix(name, s.Prefix)
		}
		logs, lerr := s.D.Logs(ctx, name, 0)
		var b strings.Builder
		fmt.Fprintf(&b, "# container %s (service %s)\n", name, svc)
		if info, err := s.D.Inspect(ctx, name); err == nil {
			fmt.Fprintf(&b, "# state: %s exit=%d started=%s finished=%s\n", info.State.Status, info.State.ExitCode, info.State.StartedAt, info.State.FinishedAt)
			if info.State.Health != nil {
				fmt.Fprintf(&b, "# health: %s\n%s\n", info.State.Health.Status, prefixLines(healthLog(info.State.Health), "# "))
			}
		}
		if lerr != nil {
			fmt.Fprintf(&b, "# docker logs failed: %v\n", lerr)
		}
		b.WriteString(logs)
		p := filepath.Join(dir, file+".log")
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	return written, nil
}

func prefixLines(s, p string) string {
	if s == "" {
		return ""
	}
	return p + strings.ReplaceAll(s, "\n", "\n"+p)
}

func mapValues(m map[string]string) []string {
	v := make([]string, 0, len(m))
	for _, x := range m {
		v = append(v, x)
	}
	sort.Strings(v)
	return v
}

// LoopbackOnly reports whether a host:port (or URL host) is a loopback address, the only
// kind of address the checker may target on the docker runtime.
func LoopbackOnly(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
