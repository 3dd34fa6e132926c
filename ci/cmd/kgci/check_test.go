package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kidney-genetics/kidney-genetics-db/ci/e2etest"
)

func TestCheckFlags(t *testing.T) {
	ctx := context.Background()
	for args, want := range map[*[]string]string{
		{"--results", t.TempDir()}:                                            "give --backend-url and/or --frontend-url",
		{"--backend-url", "http://10.1.2.3:8000"}:                             "only targets 127.0.0.1 or localhost",
		{"--backend-url", "ftp://127.0.0.1"}:                                  "is not an http:// base URL",
		{"--backend-url", "http://127.0.0.1:1", "--checks", "security.users"}: `no check or group named "security.users"`,
	} {
		err := runCheck(ctx, *args)
		require.Error(t, err, "%v", *args)
		assert.Contains(t, err.Error(), want)
	}
}

// TestCheckRunsURLChecks: a frontend whose /health is wrong fails the command with
// e2etest.ErrFailed and a results.json saying which check failed.
func TestCheckRunsURLChecks(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	results := t.TempDir()
	t.Setenv("GITHUB_STEP_SUMMARY", filepath.Join(results, "step.md"))
	err := runCheck(context.Background(), []string{"--frontend-url", srv.URL + "/", "--results", results, "--checks", "health"})
	require.ErrorIs(t, err, e2etest.ErrFailed)
	b, err := os.ReadFile(filepath.Join(results, "results.json"))
	require.NoError(t, err)
	var doc struct {
		Command string
		Counts  struct{ Pass, Fail, Skip int }
		Checks  []struct{ Name, Status, Message string }
	}
	require.NoError(t, json.Unmarshal(b, &doc))
	assert.Equal(t, "check", doc.Command)
	status := map[string]string{}
	for _, c := range doc.Checks {
		status[c.Name] = c.Status
	}
	// Without --backend-url the direct backend check is skipped, not failed; the API
	// through nginx is checked (and fails: this "nginx" has no backend behind it).
	assert.Equal(t, map[string]string{"health.backend_direct": "skip", "health.through_nginx": "fail", "health.frontend": "fail"}, status)
	assert.FileExists(t, filepath.Join(results, "step.md"))
}
