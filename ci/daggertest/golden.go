package daggertest

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what the code sends now")

// Golden compares got with testdata/<name>.golden, or rewrites the file
// with -update. A mismatch shows a line diff.
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
		t.Errorf("%s: the queries sent to the engine changed; if that is intended, run `go test ./%s -update` and review the diff in git.\n%s", path, pkgDir(), Diff(string(want), got))
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

// Diff is a line diff (longest common subsequence) with three lines of
// context around each change; at most 300 lines of it are shown.
func Diff(a, b string) string {
	x := strings.Split(a, "\n")
	y := strings.Split(b, "\n")
	n, m := len(x), len(y)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var all []line
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			all = append(all, line{' ', x[i]})
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			all = append(all, line{'+', y[j]})
			j++
		default:
			all = append(all, line{'-', x[i]})
			i++
		}
	}
	const context = 3
	show := make([]bool, len(all))
	for k, l := range all {
		if l.op != ' ' {
			for c := max(0, k-context); c <= min(len(all)-1, k+context); c++ {
				show[c] = true
			}
		}
	}
	var out []string
	for k, l := range all {
		if !show[k] {
			if k > 0 && show[k-1] {
				out = append(out, "@@")
			}
			continue
		}
		out = append(out, string(l.op)+" "+l.text)
	}
	if len(out) > 300 {
		out = append(out[:300], "... (diff truncated)")
	}
	return "--- golden\n+++ now\n" + strings.Join(out, "\n")
}
