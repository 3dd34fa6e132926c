package dockerstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Daemon is a dockerd this process started and owns: `kgci test-e2e --dockerd` runs
// the stack in it when there is no Docker engine to talk to, as inside the Dagger
// pipeline's checker container (docs/dagger.md). Its lifetime is the caller's.
type Daemon struct {
	Docker  *Docker
	LogPath string
	Driver  string // storage driver dockerd chose

	cmd  *exec.Cmd
	done chan struct{}
	err  error // how the process ended, once done is closed
}

// DaemonOptions say where the daemon keeps its state.
type DaemonOptions struct {
	Bin      string // dockerd; from PATH when empty
	DataRoot string // images and containers; must not be on overlayfs (use a volume or tmpfs)
	RunDir   string // socket, pid file, exec root and log
	// StartTimeout bounds the wait for the API to answer.
	StartTimeout time.Duration
}

// StartDaemon starts dockerd and waits until its API answers. On failure nothing is
// left running and the error carries the daemon's log.
func StartDaemon(ctx context.Context, o DaemonOptions) (*Daemon, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("--dockerd starts a Docker engine and needs root with full privileges (in Dagger: withExec(insecureRootCapabilities: true))")
	}
	if o.Bin == "" {
		o.Bin = "dockerd"
	}
	bin, err := exec.LookPath(o.Bin)
	if err != nil {
		return nil, fmt.Errorf("--dockerd: %v: run kgci in an image that has a Docker engine (docker:27-dind, or the offline docker base of scripts/make-base-images.sh)", err)
	}
	if o.DataRoot == "" {
		o.DataRoot = "/var/lib/docker"
	}
	if o.RunDir == "" {
		o.RunDir = "/run/kgci-dockerd"
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 90 * time.Second
	}
	for _, dir := range []string{o.DataRoot, o.RunDir} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, err
		}
	}
	if err := nestCgroupV2(); err != nil {
		// dockerd names what it cannot do if this mattered; say what we tried.
		fmt.Fprintf(os.Stderr, "kgci: cgroup v2 nesting: %v (continuing)\n", err)
	}
	logPath := filepath.Join(o.RunDir, "dockerd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(o.RunDir, "docker.sock")
	cmd := exec.Command(bin,
		"--host=unix://"+sock,
		"--data-root="+o.DataRoot,
		"--exec-root="+filepath.Join(o.RunDir, "exec"),
		"--pidfile="+filepath.Join(o.RunDir, "docker.pid"),
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: Stop can reach containerd and the shims too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	d := &Daemon{Docker: &Docker{Host: "unix://" + sock}, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		logf.Close()
		close(d.done)
	}()

	deadline := time.Now().Add(o.StartTimeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		drv, perr := d.Docker.Run(pctx, "info", "--format", "{{.Driver}}")
		cancel()
		if perr == nil {
			d.Driver = drv
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("dockerd exited during start-up (%v); its log:\n%s", d.err, tailFile(logPath, 40))
		case <-ctx.Done():
			_ = d.Stop(10 * time.Second)
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = d.Stop(10 * time.Second)
			return nil, fmt.Errorf("dockerd did not answer within %s (last: %v); its log:\n%s", o.StartTimeout, perr, tailFile(logPath, 40))
		}
	}
}

// Stop ends the daemon (SIGTERM: it stops its containers and its containerd), and
// kills what is left of its process group after grace.
func (d *Daemon) Stop(grace time.Duration) error {
	if d == nil {
		return nil
	}
	select {
	case <-d.done:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(grace):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
		return fmt.Errorf("dockerd did not stop within %s and was killed", grace)
	}
	// Shims outlive dockerd by design; this daemon's must not.
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	return nil
}

// Log is the daemon's log so far.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// nestCgroupV2 does what moby's hack/dind does on cgroup v2: a process in the
// root of a cgroup namespace cannot delegate controllers to children, so
// everything moves to a child group first. On cgroup v1 there is nothing to do.
func nestCgroupV2() error {
	ctrl, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		return nil
	}
	if err := os.MkdirAll("/sys/fs/cgroup/init", 0o755); err != nil {
		return err
	}
	procs, err := os.ReadFile("/sys/fs/cgroup/cgroup.procs")
	if err != nil {
		return err
	}
	for _, p := range strings.Fields(string(procs)) {
		// A process that exited meanwhile cannot be moved; that is fine.
		_ = os.WriteFile("/sys/fs/cgroup/init/cgroup.procs", []byte(p), 0o644)
	}
	var enable []string
	for _, c := range strings.Fields(string(ctrl)) {
		enable = append(enable, "+"+c)
	}
	if len(enable) == 0 {
		return nil
	}
	return os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte(strings.Join(enable, " ")), 0o644)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return Tail(string(b), n)
}

// Tail is the last n lines of a log or command output, for messages.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
