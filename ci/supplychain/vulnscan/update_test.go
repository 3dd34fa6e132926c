package vulnscan

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Update cannot reach grype's real site from tests; a loopback server that fails stands in
// for it, to check that the failure says what failed and where.
func TestUpdateFailureNamesSource(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	orig := distributionURL
	distributionURL = srv.URL + "/databases/latest.json"
	defer func() { distributionURL = orig }()

	dir := t.TempDir()
	err := Update(context.Background(), dir)
	if err == nil {
		t.Fatal("no error")
	}
	t.Log(err)
	for _, w := range []string{"could not be downloaded", distributionURL, dir} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}
