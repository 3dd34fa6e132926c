package daggertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
)

// BuildModule compiles the Dagger module (the repository root's package
// main, with its committed generated code) the way the engine's Go SDK
// runtime does: `go build -o runtime .`.
func BuildModule(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "runtime")
	cmd := exec.Command("go", "build", "-ldflags", "-s -w", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the Dagger module (go build . in %s): %v\n%s", root, err, out)
	}
	return bin
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "dagger.json")); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no dagger.json above %s", wd)
}

// Call is one function call the engine makes into the module runtime.
type Call struct {
	Parent   string // "KidneyGenetics"
	Function string // Go method name, "" for the constructor
	// ParentJSON is the object the function is called on, as the previous
	// call returned it ("{}" for the constructor).
	ParentJSON string
	// Args are JSON values by argument name.
	Args map[string]string
	// Answer, if set, answers the pipeline's own queries before the
	// defaults do.
	Answer Resolver
}

// Outcome is what the runtime did.
type Outcome struct {
	Return  json.RawMessage // returnValue, if the call succeeded
	Error   string          // returnError's message, if it failed
	Engine  *Engine
	Output  string
	Queries []string // without the function-call protocol's own
}

// Invoke runs the module runtime once, as the engine does for one function
// call: the runtime asks for currentFunctionCall and answers with
// returnValue or returnError.
func Invoke(t testing.TB, runtime string, call Call) Outcome {
	t.Helper()
	if call.ParentJSON == "" {
		call.ParentJSON = "{}"
	}
	var ret json.RawMessage
	var retErr string
	protocol := func(path []string, f *ast.Field) (any, bool) {
		if len(path) == 1 && path[0] == "currentFunctionCall" {
			switch f.Name {
			case "parentName":
				return call.Parent, true
			case "name":
				return call.Function, true
			case "parent":
				return call.ParentJSON, true
			case "inputArgs":
				var list []map[string]any
				for name := range call.Args {
					list = append(list, map[string]any{"id": "arg:" + name})
				}
				return list, true
			case "returnValue":
				ret = json.RawMessage(StringArg(f, "value"))
				return nil, true
			case "returnError":
				retErr = "returned an error"
				return nil, true
			}
		}
		if len(path) == 1 && strings.HasPrefix(path[0], "loadFunctionCallArgValueFromID(") {
			name := strings.TrimSuffix(strings.TrimPrefix(path[0], `loadFunctionCallArgValueFromID(id:"arg:`), `")`)
			switch f.Name {
			case "name":
				return name, true
			case "value":
				return call.Args[name], true
			}
		}
		// The runtime turns an error into an Error object first.
		if len(path) >= 1 && strings.HasPrefix(path[0], "error(") && f.Name == "id" {
			return "error-id", true
		}
		if call.Answer != nil {
			return call.Answer(path, f)
		}
		return nil, false
	}
	e := Start(t, protocol)
	cmd := exec.CommandContext(context.Background(), runtime)
	cmd.Env = append(os.Environ(), e.Env()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	o := Outcome{Return: ret, Engine: e, Output: out.String()}
	if retErr != "" {
		// returnError takes the ID of an error(message:...) object the
		// runtime made just before.
		o.Error = strings.Join(o.ErrorQueries(), "; ")
	}
	for _, q := range e.Queries() {
		if !isProtocol(q) {
			o.Queries = append(o.Queries, q)
		}
	}
	if runErr != nil && retErr == "" {
		t.Fatalf("module runtime failed without returning an error: %v\n%s", runErr, out.String())
	}
	return o
}

func isProtocol(q string) bool {
	for _, p := range []string{"currentFunctionCall", "loadFunctionCallArgValueFromID"} {
		if strings.HasPrefix(q, "query{"+p) {
			return true
		}
	}
	return false
}

// Transcript renders the queries that are not function-call protocol.
func (o Outcome) Transcript() string {
	out := make([]string, 0, len(o.Queries))
	for _, q := range o.Queries {
		out = append(out, Pretty(q))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// ErrorQueries returns the messages of error(...) objects the runtime made.
func (o Outcome) ErrorQueries() []string {
	var msgs []string
	for _, q := range o.Engine.Queries() {
		if i := strings.Index(q, "error(message:"); i >= 0 {
			rest := q[i+len("error(message:"):]
			if s, err := strconv.QuotedPrefix(rest); err == nil {
				if u, err := strconv.Unquote(s); err == nil {
					msgs = append(msgs, u)
				}
			}
		}
	}
	return msgs
}
