package e2etest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

// The inspects that kgci reads from the engine's socket (dockerstack/engineapi.go) decode
// to what `docker inspect` prints, on the real engine: the run's images, and a container
// with the production security options, created and then running.
func TestEngineAPIInspectsAreTheCLIs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	if !strings.HasPrefix(e.d.Host, "unix://") {
		t.Skipf("the engine's socket is read only for a unix:// DOCKER_HOST (here %q): every inspect is the CLI's", e.d.Host)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// What the CLI prints for the same object, decoded into the same type.
	cliInspect := func(v any, kind, name string) {
		t.Helper()
		out, err := e.d.Run(ctx, kind, "inspect", name)
		require.NoError(t, err)
		var objs []json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(out), &objs))
		require.Len(t, objs, 1)
		require.NoError(t, json.Unmarshal(objs[0], v))
	}
	for svc, ref := range ImageRefs(e.profile, e.tag) {
		api, err := e.d.InspectImage(ctx, ref)
		require.NoError(t, err, svc)
		want := &dockerstack.ImageInfo{}
		cliInspect(want, "image", ref)
		assert.Equal(t, want, api, svc)
		assert.NotEmpty(t, api.ID, svc)
	}

	name := "kgci-apitest-" + dockerstack.NewRunID()
	// nginx exits at once (code 1) when its upstream's name does not resolve, and the two
	// inspects of the "running" state then raced its exit: --add-host keeps it running.
	_, err := e.d.Run(ctx, "create", "--name", name, "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
		"--add-host", "kidney_genetics_backend:127.0.0.1",
		"--health-interval", "30s", ImageRefs(e.profile, e.tag)[dockerstack.Frontend])
	require.NoError(t, err)
	defer e.d.Run(context.Background(), "rm", "-f", name)
	for _, state := range []string{"created", "running"} {
		if state == "running" {
			_, err := e.d.Run(ctx, "start", name)
			require.NoError(t, err)
		}
		api, err := e.d.Inspect(ctx, name)
		require.NoError(t, err)
		want := &dockerstack.ContainerInfo{}
		cliInspect(want, "container", name)
		assert.Equal(t, state, api.State.Status)
		assert.Equal(t, []string{"ALL"}, api.HostConfig.CapDrop)
		assert.Equal(t, int64(30*time.Second), api.Config.Healthcheck.Interval)
		assert.Equal(t, want, api, state)
	}
	_, err = e.d.Inspect(ctx, name+"-gone")
	assert.ErrorContains(t, err, "No such container")
}
