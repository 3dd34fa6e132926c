// Package dockerstack runs the production topology of docker-compose.prod.yml on a Docker
// engine, under names unique to one run, so that `kgci test-e2e` can check the real images
// the way they are deployed and remove every trace afterwards.
//
// It drives the docker CLI rather than the Engine API client: the CLI is what users have,
// its error messages are the ones they know, and it negotiates the API version with old
// engines (Debian's 20.10) by itself. The one exception is the inspects on a unix socket
// (engineapi.go), the most frequent calls, where a CLI start costs more than the answer.
package dockerstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// DefaultHost is the engine that scripts/engines/dockerd.sh starts on CI machines.
const DefaultHost = "unix:///run/kgci/docker.sock"

// Docker runs docker CLI commands against one engine.
type Docker struct {
	Bin  string // docker CLI; "docker" from PATH when empty
	Host string // DOCKER_HOST; the CLI's own default when empty
}

// FromEnv picks the engine: $DOCKER_HOST if set, else the CI engine's socket if it exists,
// else whatever the docker CLI uses by default (a user's own Docker).
func FromEnv() *Docker {
	d := &Docker{Bin: os.Getenv("KGCI_DOCKER"), Host: os.Getenv("DOCKER_HOST")}
	if d.Host == "" {
		if _, err := os.Stat(strings.TrimPrefix(DefaultHost, "unix://")); err == nil {
			d.Host = DefaultHost
		}
	}
	return d
}

func (d *Docker) bin() string {
	if d.Bin == "" {
		return "docker"
	}
	return d.Bin
}

func (d *Docker) cmd(ctx context.Context, args []string) *exec.Cmd {
	c := exec.CommandContext(ctx, d.bin(), args...)
	// A docker that exited or was killed while a child still holds its output (KGCI_DOCKER
	// may be a wrapper script) must not keep Wait, and whoever waits on it, blocked.
	c.WaitDelay = 2 * time.Second
	c.Env = os.Environ()
	if d.Host != "" {
		c.Env = append(c.Env, "DOCKER_HOST="+d.Host)
	}
	return c
}

// CmdError is a failed docker command with what it printed.
type CmdError struct {
	Args     []string
	ExitCode int
	Stderr   string
	Err      error
}

func (e *CmdError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("docker %s: %s", strings.Join(abbrev(e.Args), " "), msg)
}

func (e *CmdError) Unwrap() error { return e.Err }

// abbrev keeps error messages readable when a command carries long arguments (scripts).
func abbrev(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if len(a) > 80 {
			a = a[:77] + "..."
		}
		out[i] = a
	}
	return out
}

// Run runs a docker command and returns its trimmed stdout.
func (d *Docker) Run(ctx context.Context, args ...string) (string, error) {
	return d.RunInput(ctx, nil, args...)
}

// RunInput is Run with stdin.
func (d *Docker) RunInput(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	c := d.cmd(ctx, args)
	c.Stdin = stdin
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		ce := &CmdError{Args: args, ExitCode: -1, Stderr: stderr.String(), Err: err}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			ce.ExitCode = ee.ExitCode()
		}
		if ctx.Err() != nil {
			ce.Err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return stdout.String(), ce
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Stream starts a docker command and returns its stdout as a stream; wait reports how the
// command ended (with its stderr) once the stream has been read.
func (d *Docker) Stream(ctx context.Context, args ...string) (io.Reader, func() error, error) {
	c := d.cmd(ctx, args)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := c.Start(); err != nil {
		return nil, nil, err
	}
	wait := func() error {
		if err := c.Wait(); err != nil {
			ce := &CmdError{Args: args, ExitCode: -1, Stderr: stderr.String(), Err: err}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				ce.ExitCode = ee.ExitCode()
			}
			return ce
		}
		return nil
	}
	return out, wait, nil
}

// ExecResult is the outcome of a command inside a container.
type ExecResult struct {
	ExitCode int
	Stdout   string
	Stderr   string
}

// Output is stdout and stderr together, for messages.
func (r ExecResult) Output() string {
	return strings.TrimSpace(strings.TrimSpace(r.Stdout) + "\n" + strings.TrimSpace(r.Stderr))
}

// Exec runs cmd in a running container. A non-zero exit of cmd is not an error: it is in
// the result. An error means the command could not be run or ctx ended.
func (d *Docker) Exec(ctx context.Context, container string, cmd ...string) (ExecResult, error) {
	return d.ExecArgs(ctx, nil, container, cmd...)
}

// ExecArgs is Exec with extra `docker exec` flags (e.g. --user).
func (d *Docker) ExecArgs(ctx context.Context, flags []string, container string, cmd ...string) (ExecResult, error) {
	args := append([]string{"exec"}, flags...)
	args = append(args, container)
	args = append(args, cmd...)
	var stdout, stderr bytes.Buffer
	c := d.cmd(ctx, args)
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	res := ExecResult{Stdout: stdout.String(), Stderr: stderr.String()}
	if err == nil {
		return res, nil
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("docker exec %s %s: %w", container, strings.Join(abbrev(cmd), " "), ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.ExitCode = ee.ExitCode()
		return res, nil
	}
	return res, fmt.Errorf("docker exec %s: %w", container, err)
}

// Load loads a docker-archive tarball into the engine.
func (d *Docker) Load(ctx context.Context, tarball string) error {
	if _, err := d.Run(ctx, "load", "-q", "-i", tarball); err != nil {
		return fmt.Errorf("%w; is dockerd running (scripts/engines/dockerd.sh start) and DOCKER_HOST set?", err)
	}
	return nil
}

// Ping fails with a message saying how to start an engine when none answers.
func (d *Docker) Ping(ctx context.Context) (string, error) {
	v, err := d.Run(ctx, "version", "--format", "{{.Server.Version}}")
	if err != nil {
		host := d.Host
		if host == "" {
			host = "the docker CLI's default engine"
		}
		return "", fmt.Errorf("no Docker engine answers at %s: %v\n"+
			"start one with `scripts/engines/dockerd.sh start` (CI machines), or start Docker and set DOCKER_HOST", host, err)
	}
	return v, nil
}

// Health is .State.Health of a container.
type Health struct {
	Status string
	Log    []struct {
		Start    time.Time
		End      time.Time
		ExitCode int
		Output   string
	}
}

// HealthConfig is .Config.Healthcheck (durations in nanoseconds, as Docker stores them).
type HealthConfig struct {
	Test        []string
	Interval    int64
	Timeout     int64
	StartPeriod int64
	Retries     int
}

// ContainerInfo is the subset of `docker inspect` the stack and the checks read.
type ContainerInfo struct {
	ID    string
	Name  string
	Image string
	State struct {
		Status     string
		Running    bool
		ExitCode   int
		Error      string
		OOMKilled  bool
		Pid        int
		StartedAt  string
		FinishedAt string
		Health     *Health
	}
	Config struct {
		Image       string
		User        string
		Env         []string
		Labels      map[string]string
		Healthcheck *HealthConfig
	}
	HostConfig struct {
		CapAdd         []string
		CapDrop        []string
		SecurityOpt    []string
		ReadonlyRootfs bool
		Privileged     bool
		LogConfig      struct {
			Type   string
			Config map[string]string
		}
	}
	NetworkSettings struct {
		Networks map[string]struct {
			IPAddress string
			Aliases   []string
		}
		// Ports maps "8000/tcp" to its host bindings; an exposed, unpublished port maps to none.
		Ports map[string][]PortBinding
	}
	Mounts []Mount
}

// PortBinding is one host address a container port is published on.
type PortBinding struct {
	HostIP   string `json:"HostIp"`
	HostPort string
}

// Mount is one entry of a container's .Mounts.
type Mount struct {
	Type        string // volume, bind, tmpfs
	Name        string // the volume's name (Type volume)
	Source      string
	Destination string
	RW          bool
}

// Inspect reads a container's state and configuration.
func (d *Docker) Inspect(ctx context.Context, container string) (*ContainerInfo, error) {
	return inspect[ContainerInfo](ctx, d, "container", container)
}

// inspect runs `docker <kind> inspect name` and decodes the one object it prints; on a
// unix socket it asks the engine's API instead (engineapi.go).
func inspect[T any](ctx context.Context, d *Docker, kind, name string) (*T, error) {
	var v T
	if ok, err := d.apiInspect(ctx, kind, name, &v); ok {
		if err != nil {
			return nil, err
		}
		return &v, nil
	}
	out, err := d.Run(ctx, kind, "inspect", name)
	if err != nil {
		return nil, err
	}
	var infos []T
	if err := json.Unmarshal([]byte(out), &infos); err != nil || len(infos) != 1 {
		return nil, fmt.Errorf("docker %s inspect %s: unexpected output: %v", kind, name, err)
	}
	return &infos[0], nil
}

// NetworkInfo is the subset of `docker network inspect` the checks read.
type NetworkInfo struct {
	Name     string
	Internal bool
}

// InspectNetwork reads a network's configuration.
func (d *Docker) InspectNetwork(ctx context.Context, name string) (*NetworkInfo, error) {
	return inspect[NetworkInfo](ctx, d, "network", name)
}

// ImageInfo is the subset of `docker image inspect` we need.
type ImageInfo struct {
	ID     string
	Size   int64
	Config struct {
		User        string
		Env         []string
		Healthcheck *HealthConfig
		Labels      map[string]string
	}
}

// InspectImage reads an image's configuration; the error says how to get the image.
func (d *Docker) InspectImage(ctx context.Context, ref string) (*ImageInfo, error) {
	return inspect[ImageInfo](ctx, d, "image", ref)
}

// Logs returns a container's stdout and stderr interleaved as Docker stored them.
func (d *Docker) Logs(ctx context.Context, container string, tail int) (string, error) {
	args := []string{"logs", "--timestamps"}
	if tail > 0 {
		args = append(args, "--tail", fmt.Sprint(tail))
	}
	args = append(args, container)
	c := d.cmd(ctx, args)
	var buf bytes.Buffer
	c.Stdout, c.Stderr = &buf, &buf
	if err := c.Run(); err != nil {
		return buf.String(), fmt.Errorf("docker logs %s: %v: %s", container, err, strings.TrimSpace(buf.String()))
	}
	return buf.String(), nil
}
