package docs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// kgci is built once for all tests: every check runs the real binary.
var kgci string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kgci-docs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kgci = filepath.Join(dir, "kgci")
	build := exec.Command("go", "build", "-o", kgci, "./ci/cmd/kgci")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./ci/cmd/kgci: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot() string { return filepath.Join("..", "..") }

func TestInvocationsFromFixture(t *testing.T) {
	b, err := os.ReadFile("testdata/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, inv := range Invocations(string(b)) {
		got = append(got, fmt.Sprintf("%d %s %v", inv.Line, inv.Command, inv.Flags))
	}
	want := []string{
		"5 publish [registry insecure]",
		"6 publish [images]",
		"9 publish [namespace latest]",
		"12 reproduce [commit engine help]",
		"13 publish [no-such-flag]",
		"14 nosuchcommand [whatever]",
		"19 publish [version]",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("invocations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The checker must catch a flag that does not exist and a command that
// does not exist, and accept everything real.
func TestCheckCatchesWhatIsNotThere(t *testing.T) {
	b, err := os.ReadFile("testdata/README.md")
	if err != nil {
		t.Fatal(err)
	}
	errs := Check(kgci, Invocations(string(b)))
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	if len(errs) != 2 || !strings.Contains(all, "kgci publish has no flag --no-such-flag") || !strings.Contains(all, "`kgci nosuchcommand --help` failed") {
		t.Fatalf("want exactly the missing flag and the missing command, got %d:\n%s", len(errs), all)
	}
}

// TestReadmeIsTrue is the real check: every kgci command README.md shows
// must run with --help and list every flag shown with it.
func TestReadmeIsTrue(t *testing.T) {
	checkDoc(t, filepath.Join(repoRoot(), "README.md"), true)
}

// docs/ci.md documents publish and reproduce; same rule.
func TestCIGuideIsTrue(t *testing.T) {
	checkDoc(t, filepath.Join(repoRoot(), "docs", "ci.md"), true)
}

// docs/remote-builder.md shows the cache, TLS and registry flags; same rule.
func TestRemoteBuilderGuideIsTrue(t *testing.T) {
	checkDoc(t, filepath.Join(repoRoot(), "docs", "remote-builder.md"), true)
}

func checkDoc(t *testing.T, path string, mustHaveCommands bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v: the documentation must exist and show how to run the pipeline (go run ./ci/cmd/kgci <command> ...)", path, err)
	}
	invs := Invocations(string(b))
	if mustHaveCommands && len(invs) == 0 {
		t.Fatalf("%s shows no kgci command in code (e.g. `go run ./ci/cmd/kgci build --profile offline`): document how to run the pipeline", path)
	}
	for _, err := range Check(kgci, invs) {
		t.Errorf("%s %v", path, err)
	}
	t.Logf("%s: %d kgci invocations checked", path, len(invs))
}
