package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kidney-genetics/kidney-genetics-db/ci/publish"
	"github.com/kidney-genetics/kidney-genetics-db/ci/publish/publishtest"
)

// The password must not reach stdout, the error (which main prints to
// stderr) or any results file, on success or on failure.
func TestPublishNeverShowsThePassword(t *testing.T) {
	const user, pass = "kg-bot", "Zx9-very-secret-token-Qw7"
	const rev = "89abcdef0123456789abcdef0123456789abcdef"
	images, results := t.TempDir(), t.TempDir()
	publishtest.WriteArchives(t, images, rev, publish.ImageNames...)
	host, _ := publishtest.StartRegistry(t, user, pass)

	run := func(password string) (string, error) {
		env := map[string]string{publish.EnvUsername: user, publish.EnvPassword: password}
		var out bytes.Buffer
		err := runPublish(context.Background(), []string{
			"--images", images, "--results", results, "--registry", host, "--namespace", "kg",
			"--version", "v0.3.0", "--insecure",
		}, &out, func(k string) string { return env[k] })
		return out.String(), err
	}

	out, err := run(pass)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	// Without --revision the images' own label names them.
	if !strings.Contains(out, host+"/kg/kidney_genetics_backend@sha256:") || !strings.Contains(out, "0.3.0, 89abcdef0123") {
		t.Errorf("stdout lacks the pinned backend reference or the tags:\n%s", out)
	}
	var res publish.Result
	b, err := os.ReadFile(filepath.Join(results, "publish.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil || res.Revision != rev || len(res.Images) != 2 {
		t.Errorf("publish.json = %+v, %v", res, err)
	}

	_, badErr := run("not-" + pass)
	if badErr == nil || !strings.Contains(badErr.Error(), "rejected the credentials") {
		t.Fatalf("wrong password: err = %v", badErr)
	}

	for what, text := range map[string]string{"stdout": out, "error": badErr.Error()} {
		if strings.Contains(text, pass) {
			t.Errorf("%s shows the password: %s", what, text)
		}
	}
	filepath.WalkDir(results, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(pass)) {
			t.Errorf("%s contains the password", p)
		}
		return nil
	})
}

func TestPublishRefusesHalfSetCredentials(t *testing.T) {
	env := map[string]string{publish.EnvUsername: "bot"}
	err := runPublish(context.Background(), []string{"--images", t.TempDir()}, &bytes.Buffer{}, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), publish.EnvPassword) {
		t.Fatalf("err = %v, want one naming %s", err, publish.EnvPassword)
	}
}
