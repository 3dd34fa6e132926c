package daggertest

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what the code sends now")

// Golden compares got with testdata/<name>.golden, or rewrites the file
// with -update. A mismatch shows a line diff (go-cmp).
func Golden(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v (run `go test %s -update` to create it)", path, err, "./"+pkgDir())
	}
	if string(want) != got {
		t.Errorf("%s: the queries sent to the engine changed; if that is intended, run `go test ./%s -update` and review the diff in git.\n-golden +now:\n%s", path, pkgDir(), cmp.Diff(strings.Split(string(want), "\n"), strings.Split(got, "\n")))
	}
}

func pkgDir() string {
	wd, _ := os.Getwd()
	for dir := wd; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			rel, _ := filepath.Rel(dir, wd)
			return filepath.ToSlash(rel)
		}
	}
	return "."
}
