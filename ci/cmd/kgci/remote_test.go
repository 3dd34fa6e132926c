package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/buildkit"
	"github.com/kidney-genetics/kidney-genetics-db/ci/imageinspect"
)

// TestRemoteBuilderWarmRegistryCache is a team's second machine: the CI
// buildkitd exports the backend's build cache to a registry; a new buildkitd
// with an empty state, reachable only over TCP with mutual TLS (certificates
// made here), imports it and rebuilds without running a single step, to the
// same image. Connections without a client certificate, or without TLS, are
// refused with the flag that fixes them.
func TestRemoteBuilderWarmRegistryCache(t *testing.T) {
	ctx, root := needBuilder(t, "backend")
	bkd, err := buildkitdBinary()
	if err != nil {
		skipUnlessE2E(t, "%v", err)
	}

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/kidney-genetics/cache"
	common := []string{
		"--profile", "offline", "--images", "backend", "--repo", root, "--budgets", "none",
		"--revision", "0123456789abcdef0123456789abcdef01234567", "--created", "2026-01-02T03:04:05Z",
	}
	dir := t.TempDir()

	// 1. The CI daemon builds (warm) and exports every stage's cache.
	var out bytes.Buffer
	require.NoError(t, runBuild(ctx, append(common,
		"--out", filepath.Join(dir, "ci", "images"), "--progress", "quiet",
		"--cache-to", "type=registry,ref="+ref+",mode=max,registry.insecure=true",
	), &out, os.Stderr), out.String())
	exported := readBuildReport(t, filepath.Join(dir, "ci", "build.json"))

	// 2. A fresh buildkitd behind mutual TLS.
	pki := makePKI(t, filepath.Join(dir, "pki"))
	addr := startTLSBuildkitd(ctx, t, bkd, pki)
	clientTLS := buildkit.TLS{CACert: pki.ca, Cert: pki.clientCert, Key: pki.clientKey}

	_, err = buildkit.Connect(ctx, addr, buildkit.TLS{CACert: pki.ca})
	require.Error(t, err, "the daemon must refuse a client without a certificate")
	assert.Contains(t, err.Error(), "--tlscert and --tlskey", "%v", err)
	_, err = buildkit.Connect(ctx, addr, buildkit.TLS{})
	require.Error(t, err, "the daemon must refuse a plain-text client")
	assert.Contains(t, err.Error(), "TLS", "%v", err)

	// 3. The fresh daemon imports the cache: every step CACHED, same image.
	var progress bytes.Buffer
	out.Reset()
	require.NoError(t, runBuild(ctx, append(common,
		"--out", filepath.Join(dir, "remote", "images"), "--progress", "plain",
		"--buildkit-host", addr, "--tlscacert", clientTLS.CACert, "--tlscert", clientTLS.Cert, "--tlskey", clientTLS.Key,
		"--cache-from", "type=registry,ref="+ref+",registry.insecure=true",
	), &out, &progress), "%s\n%s", out.String(), progress.String())
	ran, cached := runSteps(progress.String())
	assert.Empty(t, ran, "steps the fresh builder ran instead of taking them from the registry cache:\n%s", progress.String())
	assert.NotEmpty(t, cached, "no RUN step reported CACHED; the progress was:\n%s", progress.String())
	remote := readBuildReport(t, filepath.Join(dir, "remote", "build.json"))
	assert.Equal(t, addr, remote.BuildkitHost)
	require.Len(t, remote.Images, 1)
	// The same image: the same layers and the same configuration. Not the
	// same config digest: where the exporter writes history from the layers,
	// a layer taken from an imported cache is described as "imported
	// sha256:..." instead of by its build step (docs/remote-builder.md).
	ours, theirs := imageConfig(t, exported.Images[0].Tarball), imageConfig(t, remote.Images[0].Tarball)
	require.NotEmpty(t, ours.RootFS.DiffIDs)
	assert.Equal(t, ours.RootFS.DiffIDs, theirs.RootFS.DiffIDs, "the remote builder made other layers")
	assert.Equal(t, ours.Config, theirs.Config)
	assert.Equal(t, len(ours.History), len(theirs.History))
}

func imageConfig(t *testing.T, tarball string) v1.ConfigFile {
	t.Helper()
	info, err := imageinspect.ReadFile(tarball, imageinspect.Options{})
	require.NoError(t, err)
	return info.Config
}

func readBuildReport(t *testing.T, path string) buildReport {
	t.Helper()
	var rep buildReport
	dt, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(dt, &rep))
	require.NotEmpty(t, rep.Images)
	return rep
}

var (
	stepLine = regexp.MustCompile(`^(#\d+) \[[^]]*\] RUN `)
	doneLine = regexp.MustCompile(`^(#\d+) (DONE|CACHED)`)
)

// runSteps reads BuildKit's plain progress: a RUN vertex that says CACHED
// was not executed (one taken from an imported cache then downloads its
// layer and ends in DONE as well); one that only ends in DONE was.
func runSteps(progress string) (ran, cached []string) {
	steps := map[string]string{}
	seen := map[string]bool{}
	for _, l := range strings.Split(progress, "\n") {
		if m := stepLine.FindStringSubmatch(l); m != nil {
			steps[m[1]] = l
		}
		m := doneLine.FindStringSubmatch(l)
		if m == nil || steps[m[1]] == "" || seen[m[1]] {
			continue
		}
		seen[m[1]] = true
		if m[2] == "DONE" {
			ran = append(ran, steps[m[1]])
		} else {
			cached = append(cached, steps[m[1]])
		}
	}
	return ran, cached
}

func TestRunSteps(t *testing.T) {
	ran, cached := runSteps("#5 [backend venv 2/3] RUN pip install\n#6 [backend 1/2] RUN true\n#5 CACHED\n#6 0.1 hi\n#6 DONE 0.2s\n#7 [x] COPY a b\n#7 DONE 0.0s\n" +
		// imported from a remote cache: CACHED, then its layer is pulled and it is DONE
		"#8 [frontend 4/4] RUN chown\n#8 CACHED\n\n#8 [frontend 4/4] RUN chown\n#8 sha256:9d 2.61kB / 2.61kB done\n#8 DONE 0.1s\n")
	assert.Equal(t, []string{"#6 [backend 1/2] RUN true"}, ran)
	assert.Equal(t, []string{"#5 [backend venv 2/3] RUN pip install", "#8 [frontend 4/4] RUN chown"}, cached)
}

// buildkitdBinary is the daemon scripts/engines/buildkitd.sh builds and
// caches (KGCI_BUILDKITD overrides).
func buildkitdBinary() (string, error) {
	if b := os.Getenv("KGCI_BUILDKITD"); b != "" {
		return b, nil
	}
	script, err := os.ReadFile(filepath.Join("..", "..", "..", "scripts", "engines", "buildkitd.sh"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^BUILDKIT_VERSION=(\S+)$`).FindSubmatch(script)
	if m == nil {
		return "", fmt.Errorf("no BUILDKIT_VERSION= in scripts/engines/buildkitd.sh")
	}
	cache := os.Getenv("KGCI_CACHE")
	if cache == "" {
		cache = "/var/cache/kidney-genetics-ci"
	}
	b := filepath.Join(cache, "bin", "buildkit-"+string(m[1]), "buildkitd")
	if _, err := os.Stat(b); err != nil {
		return "", fmt.Errorf("no buildkitd binary (scripts/engines/buildkitd.sh build makes it): %w", err)
	}
	return b, nil
}

// startTLSBuildkitd runs bkd with an empty state on a free loopback port,
// requiring client certificates signed by pki.ca, until the test ends.
func startTLSBuildkitd(ctx context.Context, t *testing.T, bkd string, pki pkiFiles) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := "tcp://" + ln.Addr().String()
	ln.Close()
	// overlayfs needs a real filesystem under the state (not every /tmp is).
	state, err := os.MkdirTemp("/var/tmp", "kgci-remote-buildkitd.")
	require.NoError(t, err)
	logf, err := os.Create(filepath.Join(t.TempDir(), "buildkitd.log"))
	require.NoError(t, err)
	cmd := exec.Command(bkd, "--root", state, "--addr", addr,
		"--tlscacert", pki.ca, "--tlscert", pki.serverCert, "--tlskey", pki.serverKey,
		"--oci-worker=true", "--containerd-worker=false", "--oci-worker-net=host")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		logf.Close()
		if err := os.RemoveAll(state); err != nil {
			t.Logf("removing %s: %v", state, err)
		}
	})
	tls := buildkit.TLS{CACert: pki.ca, Cert: pki.clientCert, Key: pki.clientKey}
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := buildkit.Connect(ctx, addr, tls)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case werr := <-exited:
			dt, _ := os.ReadFile(logf.Name())
			t.Fatalf("buildkitd exited (%v):\n%s", werr, dt)
		default:
		}
		if time.Now().After(deadline) {
			dt, _ := os.ReadFile(logf.Name())
			t.Fatalf("buildkitd did not answer on %s within 60 s: %v\n%s", addr, err, dt)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

type pkiFiles struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

// makePKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, as an operator would for buildkitd --tlscacert/--tlscert/--tlskey.
func makePKI(t *testing.T, dir string) pkiFiles {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o700))
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kgci test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, []byte) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		require.NoError(t, err)
		kder, err := x509.MarshalECPrivateKey(k)
		require.NoError(t, err)
		return der, kder
	}
	sDER, sKey := leaf(2, "buildkitd", x509.ExtKeyUsageServerAuth)
	cDER, cKey := leaf(3, "kgci", x509.ExtKeyUsageClientAuth)
	return pkiFiles{
		ca:         write("ca.pem", "CERTIFICATE", caDER),
		serverCert: write("server.pem", "CERTIFICATE", sDER),
		serverKey:  write("server-key.pem", "EC PRIVATE KEY", sKey),
		clientCert: write("client.pem", "CERTIFICATE", cDER),
		clientKey:  write("client-key.pem", "EC PRIVATE KEY", cKey),
	}
}
