package dockerstack

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeEngine serves the inspect endpoints on a unix socket, as dockerd does.
func fakeEngine(t *testing.T) (host string, paths *[]string) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	var seen []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.URL.Path)
		switch r.URL.Path {
		case "/containers/kgci-r1-backend/json":
			_, _ = w.Write([]byte(`{"Name":"/kgci-r1-backend","State":{"Status":"running","Running":true,"Health":{"Status":"starting"}},"Config":{"User":"1000:1000","Healthcheck":{"Test":["CMD","curl","-fsS","http://127.0.0.1:8000/api/health"],"Interval":30000000000}},"NetworkSettings":{"Networks":{"kgci-r1-int":{"IPAddress":"172.18.0.3"}}}}`))
		case "/images/kidney-base/postgres:offline/json":
			_, _ = w.Write([]byte(`{"Id":"sha256:008c","Size":210,"Config":{"User":""}}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"message":"No such container: kgci-r1-gone"}`))
		}
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "unix://" + sock, &seen
}

func TestInspectAsksTheEngineOnItsSocket(t *testing.T) {
	host, seen := fakeEngine(t)
	ctx := context.Background()
	d := &Docker{Host: host}

	c, err := d.Inspect(ctx, "kgci-r1-backend")
	require.NoError(t, err)
	assert.True(t, c.State.Running)
	assert.Equal(t, "starting", c.State.Health.Status)
	assert.Equal(t, int64(30e9), c.Config.Healthcheck.Interval)
	assert.Equal(t, "172.18.0.3", c.NetworkSettings.Networks["kgci-r1-int"].IPAddress)

	img, err := d.InspectImage(ctx, "kidney-base/postgres:offline")
	require.NoError(t, err)
	assert.Equal(t, "sha256:008c", img.ID, "a reference with a slash and a tag goes into the path as it is")

	_, err = d.Inspect(ctx, "kgci-r1-gone")
	assert.EqualError(t, err, "docker container inspect kgci-r1-gone: Error response from daemon: No such container: kgci-r1-gone")
	assert.Equal(t, []string{"/containers/kgci-r1-backend/json", "/images/kidney-base/postgres:offline/json", "/containers/kgci-r1-gone/json"}, *seen)
}

func TestInspectKeepsTheCLIWhereTheAPIDoesNotReach(t *testing.T) {
	host, seen := fakeEngine(t)
	bin, log := fakeDocker(t)
	t.Setenv("FAKE_INSPECT", `[{"Name":"/x"}]`)
	ctx := context.Background()
	for _, c := range []struct {
		d    *Docker
		name string
	}{
		{&Docker{Bin: bin}, "kgci-r1-backend"},                              // the CLI's own default (or context)
		{&Docker{Bin: bin, Host: "tcp://10.0.0.5:2376"}, "kgci-r1-backend"}, // TLS and the rest are the CLI's business
		{&Docker{Bin: bin, Host: host}, "name with spaces"},                 // not path-safe
	} {
		_, err := c.d.Inspect(ctx, c.name)
		require.NoError(t, err)
	}
	assert.Empty(t, *seen, "the socket was not asked")
	calls, err := os.ReadFile(log)
	require.NoError(t, err)
	assert.Equal(t, " container inspect kgci-r1-backend\ntcp://10.0.0.5:2376 container inspect kgci-r1-backend\n"+host+" container inspect name with spaces\n", string(calls))

	d := &Docker{Host: "unix://" + filepath.Join(t.TempDir(), "none.sock")}
	_, err = d.Inspect(ctx, "kgci-r1-backend")
	assert.ErrorContains(t, err, "scripts/engines/dockerd.sh start", "no engine on the socket: the error says how to start one")
}
