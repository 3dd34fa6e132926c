package checks

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
	"github.com/kidney-genetics/kidney-genetics-db/ci/spec"
)

// ProcStatus is the part of /proc/<pid>/status the security checks read.
type ProcStatus struct {
	Name       string
	Pid        int
	Uid        [4]int // real, effective, saved, filesystem
	CapEff     uint64
	CapPrm     uint64
	CapBnd     uint64
	NoNewPrivs int
}

// ParseProcStatus parses one /proc/<pid>/status.
func ParseProcStatus(s string) (ProcStatus, error) {
	var p ProcStatus
	seen := map[string]bool{}
	for _, l := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		var err error
		switch k {
		case "Name":
			p.Name = v
		case "Pid":
			p.Pid, err = strconv.Atoi(v)
		case "Uid":
			f := strings.Fields(v)
			if len(f) != 4 {
				return p, fmt.Errorf("Uid line %q", l)
			}
			for i := range f {
				if p.Uid[i], err = strconv.Atoi(f[i]); err != nil {
					break
				}
			}
		case "CapEff":
			p.CapEff, err = strconv.ParseUint(v, 16, 64)
		case "CapPrm":
			p.CapPrm, err = strconv.ParseUint(v, 16, 64)
		case "CapBnd":
			p.CapBnd, err = strconv.ParseUint(v, 16, 64)
		case "NoNewPrivs":
			p.NoNewPrivs, err = strconv.Atoi(v)
		default:
			continue
		}
		if err != nil {
			return p, fmt.Errorf("%s: %v", k, err)
		}
		seen[k] = true
	}
	for _, k := range []string{"Name", "Pid", "Uid", "CapEff", "CapBnd", "NoNewPrivs"} {
		if !seen[k] {
			return p, fmt.Errorf("no %s line in /proc/<pid>/status", k)
		}
	}
	return p, nil
}

// procStatuses reads /proc/*/status of every process in a container. Plain sh and cat, which
// both base images have (busybox or dash + coreutils). The exec'd sh and cat show up too;
// they run as the container's user, like everything else in it.
func procStatuses(ctx context.Context, e *Env, container string) ([]ProcStatus, error) {
	res, err := e.Docker().Exec(ctx, container, "sh", "-c", `for f in /proc/[0-9]*/status; do cat "$f" 2>/dev/null && echo "--end--"; done`)
	if err != nil {
		return nil, err
	}
	if res.ExitCode != 0 && res.Stdout == "" {
		return nil, fmt.Errorf("reading /proc in %s: exit %d: %s", container, res.ExitCode, res.Output())
	}
	var out []ProcStatus
	for _, block := range strings.Split(res.Stdout, "--end--") {
		if strings.TrimSpace(block) == "" {
			continue
		}
		p, err := ParseProcStatus(block)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", container, err)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no processes found in %s", container)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pid < out[j].Pid })
	return out, nil
}

func pid1(ps []ProcStatus) (ProcStatus, bool) {
	for _, p := range ps {
		if p.Pid == 1 {
			return p, true
		}
	}
	return ProcStatus{}, false
}

// offenders returns the processes of ps for which bad holds. A `docker exec` (a health
// check, another check) is runc's init for the moment before it becomes the exec'd program:
// root, and without no_new_privs until runc sets it. When every offender is one of those,
// resample looks again, and only the ones still there, same PID and name, still bad, count.
func offenders(ps []ProcStatus, bad func(ProcStatus) bool, resample func() ([]ProcStatus, error)) ([]ProcStatus, error) {
	var out []ProcStatus
	for _, p := range ps {
		if bad(p) {
			out = append(out, p)
		}
	}
	for try := 0; try < 5 && len(out) > 0 && allExecInit(out); try++ {
		again, err := resample()
		if err != nil {
			return nil, err
		}
		now := map[int]ProcStatus{}
		for _, p := range again {
			now[p.Pid] = p
		}
		var still []ProcStatus
		for _, p := range out {
			if q, ok := now[p.Pid]; ok && q.Name == p.Name && bad(q) {
				still = append(still, q)
			}
		}
		out = still
	}
	return out, nil
}

// otherUsers returns the processes of ps not running as uid (real, effective, saved and
// filesystem), not counting a concurrent exec's init (offenders).
func otherUsers(ps []ProcStatus, uid int, resample func() ([]ProcStatus, error)) ([]ProcStatus, error) {
	return offenders(ps, func(p ProcStatus) bool { return p.Uid != [4]int{uid, uid, uid, uid} }, resample)
}

// resampler reads the container's processes again after a short pause (offenders).
func resampler(ctx context.Context, e *Env, container string) func() ([]ProcStatus, error) {
	return func() ([]ProcStatus, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		return procStatuses(ctx, e, container)
	}
}

func allExecInit(ps []ProcStatus) bool {
	for _, p := range ps {
		if !strings.HasPrefix(p.Name, "runc:[") {
			return false
		}
	}
	return true
}

var securityUsers = Check{
	Name:         "security.users",
	Docker:       true,
	NeedsRunning: []string{dockerstack.Backend, dockerstack.Frontend},
	Run: func(ctx context.Context, e *Env) Outcome {
		var notes []string
		for _, t := range []struct {
			svc, who string
			uid      int
			procName string // processes that must exist, e.g. nginx master + workers
		}{
			{dockerstack.Backend, "kidney-api", spec.BackendUID, "python"},
			{dockerstack.Frontend, "nginx", spec.FrontendUID, "nginx"},
		} {
			name, _ := e.Stack.Container(t.svc)
			res, err := e.Docker().Exec(ctx, name, "id", "-u")
			if err != nil || res.ExitCode != 0 {
				return failf("`docker exec %s id -u` failed: %v %s", name, err, res.Output())
			}
			if got := strings.TrimSpace(res.Stdout); got != strconv.Itoa(t.uid) {
				return failf("%s: `id -u` in the container is %s, want %d (%s). The image's USER (ci/spec Config.User) or the compose `user:` is wrong, or the container was started with --user", t.svc, got, t.uid, t.who)
			}
			ps, err := procStatuses(ctx, e, name)
			if err != nil {
				return failf("%v", err)
			}
			p1, ok := pid1(ps)
			if !ok {
				return failf("%s: no PID 1 in /proc", t.svc)
			}
			if p1.Uid != [4]int{t.uid, t.uid, t.uid, t.uid} {
				return failf("%s: PID 1 (%s) runs with Uid %v in /proc/1/status, want %d for real, effective, saved and filesystem uid", t.svc, p1.Name, p1.Uid, t.uid)
			}
			bad, err := otherUsers(ps, t.uid, resampler(ctx, e, name))
			if err != nil {
				return failf("%v", err)
			}
			if len(bad) > 0 {
				p := bad[0]
				return failf("%s: process %d (%s) has Uid %v, want all %d: a process switched user; no process in the container may run as another user (e.g. root nginx master)", t.svc, p.Pid, p.Name, p.Uid, t.uid)
			}
			count := 0
			for _, p := range ps {
				if strings.HasPrefix(p.Name, t.procName) {
					count++
				}
			}
			if t.svc == dockerstack.Frontend && count < 2 {
				return failf("frontend: found %d nginx process(es), want a master and at least one worker", count)
			}
			notes = append(notes, fmt.Sprintf("%s uid %d (id -u and /proc/1/status; %d processes)", t.svc, t.uid, len(ps)))
		}
		return passf("%s", strings.Join(notes, "; "))
	},
}

// securityCapabilities verifies, for every service, the capability and privilege settings
// docker-compose.prod.yml asks for: both as Docker recorded them and as the kernel applies
// them to PID 1.
var securityCapabilities = Check{
	Name:         "security.capabilities",
	Docker:       true,
	NeedsRunning: []string{dockerstack.Backend, dockerstack.Frontend},
	Run: func(ctx context.Context, e *Env) Outcome {
		var notes []string
		c := e.Stack.Compose
		for _, svc := range dockerstack.Order {
			want, _ := c.Service(svc)
			name, ok := e.Stack.Container(svc)
			if !ok || (!want.DropsAllCaps() && !want.NoNewPrivileges()) {
				continue
			}
			info, err := e.Docker().Inspect(ctx, name)
			if err != nil {
				return failf("%v", err)
			}
			if !info.State.Running {
				notes = append(notes, svc+" not running, not checked")
				continue
			}
			ps, err := procStatuses(ctx, e, name)
			if err != nil {
				return failf("%v", err)
			}
			p1, _ := pid1(ps)
			var got []string
			if want.DropsAllCaps() {
				if !containsFold(info.HostConfig.CapDrop, "ALL") {
					return failf("%s: %s says cap_drop: [ALL], but the container has CapDrop %v", svc, c.Path, info.HostConfig.CapDrop)
				}
				if p1.CapEff != 0 || p1.CapPrm != 0 || p1.CapBnd != 0 {
					return failf("%s: PID 1 has CapEff %016x CapPrm %016x CapBnd %016x, want all 0 (cap_drop: ALL in %s): a cap_add or --privileged gave capabilities back", svc, p1.CapEff, p1.CapPrm, p1.CapBnd, c.Path)
				}
				got = append(got, "CapEff/CapBnd 0")
			}
			if want.NoNewPrivileges() {
				if !hasNoNewPrivs(info.HostConfig.SecurityOpt) {
					return failf("%s: %s says security_opt no-new-privileges:true, but the container has SecurityOpt %v", svc, c.Path, info.HostConfig.SecurityOpt)
				}
				bad, err := offenders(ps, func(p ProcStatus) bool { return p.NoNewPrivs != 1 }, resampler(ctx, e, name))
				if err != nil {
					return failf("%v", err)
				}
				if len(bad) > 0 {
					p := bad[0]
					return failf("%s: process %d (%s) has NoNewPrivs %d, want 1 (no-new-privileges in %s)", svc, p.Pid, p.Name, p.NoNewPrivs, c.Path)
				}
				got = append(got, "NoNewPrivs 1")
			}
			notes = append(notes, fmt.Sprintf("%s: %s", svc, strings.Join(got, ", ")))
		}
		if len(notes) == 0 {
			return failf("%s asks for no cap_drop or no-new-privileges on any service; the production file must harden backend and frontend", c.Path)
		}
		return passf("as %s requires: %s", c.Path, strings.Join(notes, "; "))
	},
}

func containsFold(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func hasNoNewPrivs(opts []string) bool {
	return dockerstack.Service{SecurityOpt: opts}.NoNewPrivileges()
}

// dbProbe prints one line per host: RESOLVE_FAIL / CONNECT_FAIL / CONNECTED, trying
// host:port for each host after argv[1] (the port). It runs with the backend image's
// Python, so the result does not depend on which nc/wget a base ships. One container
// tries every target of a network: a name that does not resolve fails at once, so the
// only wait is the connect timeout of an address that is dropped.
const dbProbe = `import socket, sys
port = int(sys.argv[1])
for host in sys.argv[2:]:
    try:
        ip = socket.gethostbyname(host)
    except Exception as e:
        print("RESOLVE_FAIL", e); continue
    try:
        socket.create_connection((ip, port), timeout=2).close()
    except Exception as e:
        print("CONNECT_FAIL", ip, e); continue
    print("CONNECTED", ip)
`

type probeResult struct {
	from, target string
	out          string
	err          error
}

// securityDBIsolation proves that PostgreSQL cannot be reached from the proxy-side network
// (npm_proxy_network: NPM and other apps live there), by name nor by IP, and that the same
// probe does reach it from the internal network, so the negative result means something.
var securityDBIsolation = Check{
	Name:   "security.db_isolation",
	Docker: true,
	Slow:   true,
	Needs:  []string{dockerstack.Postgres, dockerstack.Backend},
	// Its two probe containers, started when the backend became healthy, delayed the
	// frontend's `docker start` from 0.7 s to 1.5 s.
	StartsContainers: true,
	Timeout:          40 * time.Second,
	Run: func(ctx context.Context, e *Env) Outcome {
		s := e.Stack
		pg, _ := s.Container(dockerstack.Postgres)
		info, err := e.Docker().Inspect(ctx, pg)
		if err != nil {
			return failf("%v", err)
		}
		pgIP := info.NetworkSettings.Networks[s.InternalNetwork()].IPAddress
		if pgIP == "" {
			return failf("postgres has no address on the internal network %s", s.InternalNetwork())
		}
		if len(info.NetworkSettings.Networks) != 1 {
			var nets []string
			for n := range info.NetworkSettings.Networks {
				nets = append(nets, n)
			}
			sort.Strings(nets)
			return failf("postgres is attached to %v; it must be on the internal network only (docker-compose.prod.yml)", nets)
		}
		alias := s.Alias(dockerstack.Postgres)
		probes := []*probeResult{
			{from: s.InternalNetwork(), target: alias},
			{from: s.ProxyNetwork(), target: alias},
			{from: s.ProxyNetwork(), target: pgIP},
		}
		// One probe container per network, both at once.
		byNet := map[string][]*probeResult{}
		for _, p := range probes {
			byNet[p.from] = append(byNet[p.from], p)
		}
		var wg sync.WaitGroup
		i := 0
		for network, ps := range byNet {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				args := []string{"run", "--rm"}
				args = append(args, s.RunArgs(fmt.Sprintf("dbprobe%d", i), "dbprobe")...)
				args = append(args, "--network", network, "--cap-drop", "ALL", "--entrypoint", "python",
					s.Images[dockerstack.Backend], "-c", dbProbe, "5432")
				for _, p := range ps {
					args = append(args, p.target)
				}
				out, err := e.Docker().Run(ctx, args...)
				lines := strings.Split(strings.TrimSpace(out), "\n")
				for j, p := range ps {
					p.err = err
					if j < len(lines) {
						p.out = strings.TrimSpace(lines[j])
					} else {
						p.out = strings.TrimSpace(out)
					}
				}
			}(i)
			i++
		}
		wg.Wait()
		in, byName, byIP := probes[0], probes[1], probes[2]
		if !strings.HasPrefix(in.out, "CONNECTED") {
			return failf("the probe could not reach postgres (%s:5432) from the internal network %s either (%s %v), so the isolation result would mean nothing; the probe or the stack is broken", alias, in.from, in.out, in.err)
		}
		for _, p := range []*probeResult{byName, byIP} {
			if strings.HasPrefix(p.out, "CONNECTED") {
				return failf("postgres accepts connections at %s:5432 from the proxy-side network %s (%s): the database must be on the internal network only, and that network must be `internal: true`", p.target, p.from, p.out)
			}
			if !strings.HasPrefix(p.out, "RESOLVE_FAIL") && !strings.HasPrefix(p.out, "CONNECT_FAIL") {
				return failf("the probe from %s to %s gave no verdict: %q %v", p.from, p.target, p.out, p.err)
			}
		}
		return passf("from the internal network: %s; from the proxy-side network by name: %s; by IP: %s", in.out, firstLine(byName.out), firstLine(byIP.out))
	},
}
