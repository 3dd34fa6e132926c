package dockerstack

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeDocker is a docker CLI that logs its engine and arguments, and fails like the real
// one when FAKE_DOWN is set.
func fakeDocker(t *testing.T) (bin, log string) {
	dir := t.TempDir()
	bin, log = filepath.Join(dir, "docker"), filepath.Join(dir, "calls")
	require.NoError(t, os.WriteFile(bin, []byte(`#!/bin/sh
echo "$DOCKER_HOST $*" >> "`+log+`"
if [ -n "$FAKE_DOWN" ]; then echo "Cannot connect to the Docker daemon at $DOCKER_HOST" >&2; exit 1; fi
if [ "$2" = inspect ]; then echo "$FAKE_INSPECT"; fi
`), 0o755))
	return bin, log
}

func TestLoad(t *testing.T) {
	bin, log := fakeDocker(t)
	d := &Docker{Bin: bin, Host: "unix:///tmp/x.sock"}
	require.NoError(t, d.Load(context.Background(), "/images/backend.tar"))
	calls, err := os.ReadFile(log)
	require.NoError(t, err)
	assert.Equal(t, "unix:///tmp/x.sock load -q -i /images/backend.tar\n", string(calls), "the engine the Docker names")

	t.Setenv("FAKE_DOWN", "1")
	err = d.Load(context.Background(), "/images/backend.tar")
	assert.ErrorContains(t, err, "docker load -q -i /images/backend.tar: Cannot connect to the Docker daemon at unix:///tmp/x.sock")
	assert.ErrorContains(t, err, "scripts/engines/dockerd.sh start", "the error says how to start an engine")
}

func TestInspect(t *testing.T) {
	bin, _ := fakeDocker(t)
	d := &Docker{Bin: bin}
	t.Setenv("FAKE_INSPECT", `[{"Id":"sha256:abc","Size":42,"Config":{"User":"101:101","Labels":{"a":"b"}}}]`)
	img, err := d.InspectImage(context.Background(), "x:1")
	require.NoError(t, err)
	assert.Equal(t, "sha256:abc", img.ID)
	assert.Equal(t, int64(42), img.Size)
	assert.Equal(t, "101:101", img.Config.User)
	assert.Equal(t, map[string]string{"a": "b"}, img.Config.Labels)

	t.Setenv("FAKE_INSPECT", `[{"Id":"a"},{"Id":"b"}]`)
	_, err = d.Inspect(context.Background(), "kgci-x")
	assert.ErrorContains(t, err, "docker container inspect kgci-x: unexpected output", "one name, one object")
}

// The fields policy.runtime reads, as Docker 20.10's `docker inspect` prints them.
func TestInspectRuntimeFields(t *testing.T) {
	bin, _ := fakeDocker(t)
	d := &Docker{Bin: bin}
	t.Setenv("FAKE_INSPECT", `[{"Id":"c1","Name":"/kgci-x-postgres",
		"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"max-file":"5","max-size":"50m"}}},
		"NetworkSettings":{"Ports":{"5432/tcp":null,"8000/tcp":[{"HostIp":"127.0.0.1","HostPort":"49153"}]}},
		"Mounts":[{"Type":"volume","Name":"kgci-x-kidney_genetics_postgres_data","Source":"/var/lib/docker/volumes/kgci-x-kidney_genetics_postgres_data/_data","Destination":"/var/lib/postgresql/data","Driver":"local","Mode":"z","RW":true,"Propagation":""}]}]`)
	c, err := d.Inspect(context.Background(), "kgci-x-postgres")
	require.NoError(t, err)
	assert.Equal(t, "json-file", c.HostConfig.LogConfig.Type)
	assert.Equal(t, map[string]string{"max-file": "5", "max-size": "50m"}, c.HostConfig.LogConfig.Config)
	assert.Equal(t, []PortBinding{{HostIP: "127.0.0.1", HostPort: "49153"}}, c.NetworkSettings.Ports["8000/tcp"])
	assert.Empty(t, c.NetworkSettings.Ports["5432/tcp"])
	assert.Equal(t, []Mount{{Type: "volume", Name: "kgci-x-kidney_genetics_postgres_data", Source: "/var/lib/docker/volumes/kgci-x-kidney_genetics_postgres_data/_data", Destination: "/var/lib/postgresql/data", RW: true}}, c.Mounts)

	t.Setenv("FAKE_INSPECT", `[{"Name":"kgci-x-kidney_genetics_internal_net","Id":"n1","Driver":"bridge","Internal":true}]`)
	n, err := d.InspectNetwork(context.Background(), "kgci-x-kidney_genetics_internal_net")
	require.NoError(t, err)
	assert.Equal(t, &NetworkInfo{Name: "kgci-x-kidney_genetics_internal_net", Internal: true}, n)
}
