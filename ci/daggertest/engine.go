// Package daggertest is a stand-in Dagger engine for tests: an HTTP server
// that speaks the session protocol dagger.io/dagger uses inside `dagger run`
// and inside module functions (DAGGER_SESSION_PORT + DAGGER_SESSION_TOKEN),
// records every GraphQL query it is sent, and answers with canned values.
//
// It does not build anything. It pins what the Dagger path asks an engine
// to do — which images, mounts, users, ports — so that a change to ci/spec
// or ci/daggerbuild shows up as a golden-file diff.
package daggertest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"dagger.io/dagger"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"
	"github.com/vektah/gqlparser/v2/parser"
)

// Resolver answers one field. path holds the fields from the root to the
// field's parent, each rendered with its arguments. ok=false falls back to
// the default: an object for a field with a selection set, a canned value
// for a leaf. It is the way to answer lists and function-call metadata.
type Resolver func(path []string, f *ast.Field) (v any, ok bool)

// Engine is a fake engine session.
type Engine struct {
	Port  int
	Token string

	mu       sync.Mutex
	queries  []string
	resolver Resolver
	srv      *httptest.Server
}

// Start runs a fake engine for the test and points DAGGER_SESSION_PORT and
// DAGGER_SESSION_TOKEN at it, so both dagger.Connect and the global client
// of dagger.io/dagger/dag connect to it.
func Start(t testing.TB, r Resolver) *Engine {
	t.Helper()
	e := New(r)
	t.Cleanup(e.Close)
	t.Setenv("DAGGER_SESSION_PORT", strconv.Itoa(e.Port))
	t.Setenv("DAGGER_SESSION_TOKEN", e.Token)
	return e
}

// New runs a fake engine outside a test; Env says how to join it.
func New(r Resolver) *Engine {
	e := &Engine{Token: rand.Text(), resolver: r}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(e.srv.URL, "http://"))
	e.Port, _ = strconv.Atoi(port)
	return e
}

// Close stops the server.
func (e *Engine) Close() { e.srv.Close() }

// Env is the environment a separate process needs to join the session.
func (e *Engine) Env() []string {
	return []string{"DAGGER_SESSION_PORT=" + strconv.Itoa(e.Port), "DAGGER_SESSION_TOKEN=" + e.Token}
}

// Client connects dagger.io/dagger to the fake engine.
func (e *Engine) Client(t testing.TB) *dagger.Client {
	t.Helper()
	c, err := dagger.Connect(context.Background())
	if err != nil {
		t.Fatalf("connect to the fake engine: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Queries returns the queries received so far, in arrival order, as sent.
func (e *Engine) Queries() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.queries...)
}

// Transcript renders the queries for a golden file: each pretty-printed,
// sorted so that the interleaving of parallel requests does not matter.
func (e *Engine) Transcript() string {
	qs := e.Queries()
	out := make([]string, 0, len(qs))
	for _, q := range qs {
		out = append(out, Pretty(q))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// Pretty formats one query with one field per line.
func Pretty(q string) string {
	doc, err := parser.ParseQuery(&ast.Source{Input: q})
	if err != nil {
		return "UNPARSABLE " + q + "\n"
	}
	for _, op := range doc.Operations {
		// dagger.io/dagger v0.21 names every operation "Query"; the name
		// says nothing about what the engine is asked to do.
		op.Name = ""
		sortArgs(op.SelectionSet)
	}
	var b strings.Builder
	formatter.NewFormatter(&b, formatter.WithIndent("  ")).FormatQueryDocument(doc)
	return b.String()
}

// sortArgs puts arguments in name order: the SDK keeps them in a map, so
// the order it sends them in changes from run to run.
func sortArgs(set ast.SelectionSet) {
	for _, sel := range set {
		if f, ok := sel.(*ast.Field); ok {
			sort.SliceStable(f.Arguments, func(i, j int) bool { return f.Arguments[i].Name < f.Arguments[j].Name })
			sortArgs(f.SelectionSet)
		}
	}
}

type gqlRequest struct {
	Query     string         `json:"query"`
	Variables map[string]any `json:"variables"`
}

func (e *Engine) serve(w http.ResponseWriter, r *http.Request) {
	user, _, ok := r.BasicAuth()
	if !ok || user != e.Token {
		http.Error(w, "bad session token", http.StatusUnauthorized)
		return
	}
	if r.URL.Path != "/query" || r.Method != http.MethodPost {
		http.Error(w, "the fake engine only serves POST /query", http.StatusNotFound)
		return
	}
	var req gqlRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	e.queries = append(e.queries, req.Query)
	e.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	data, err := e.answer(req)
	if err != nil {
		json.NewEncoder(w).Encode(map[string]any{"data": nil, "errors": []map[string]any{{"message": err.Error()}}})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"data": data})
}

func (e *Engine) answer(req gqlRequest) (map[string]any, error) {
	doc, err := parser.ParseQuery(&ast.Source{Input: req.Query})
	if err != nil {
		return nil, fmt.Errorf("fake engine: cannot parse query: %v", err)
	}
	if len(doc.Operations) != 1 {
		return nil, fmt.Errorf("fake engine: want one operation, got %d", len(doc.Operations))
	}
	return e.object(nil, doc.Operations[0].SelectionSet)
}

func (e *Engine) object(path []string, set ast.SelectionSet) (map[string]any, error) {
	out := map[string]any{}
	for _, sel := range set {
		f, ok := sel.(*ast.Field)
		if !ok {
			return nil, fmt.Errorf("fake engine: fragments are not supported")
		}
		key := f.Alias
		if key == "" {
			key = f.Name
		}
		if e.resolver != nil {
			if v, ok := e.resolver(path, f); ok {
				out[key] = v
				continue
			}
		}
		if len(f.SelectionSet) > 0 {
			v, err := e.object(append(path[:len(path):len(path)], Render(f)), f.SelectionSet)
			if err != nil {
				return nil, err
			}
			out[key] = v
			continue
		}
		v, err := e.leaf(path, f)
		if err != nil {
			return nil, err
		}
		out[key] = v
	}
	return out, nil
}

// Render writes a field with its arguments in name order.
func Render(f *ast.Field) string {
	if len(f.Arguments) == 0 {
		return f.Name
	}
	args := make([]string, 0, len(f.Arguments))
	for _, a := range f.Arguments {
		args = append(args, a.Name+":"+a.Value.String())
	}
	sort.Strings(args)
	return f.Name + "(" + strings.Join(args, ",") + ")"
}

// ID is the fake engine's ID for the object a path leads to: a digest of
// the call chain, like the engine's own, so equal chains get equal IDs.
// It starts with the last call of the chain (arguments unquoted) so that
// a reader of a golden file sees what was passed.
func ID(path []string) string {
	sum := sha256.Sum256([]byte(strings.Join(path, ".")))
	last := ""
	if len(path) > 0 {
		last = strings.NewReplacer(`"`, "", `\`, "").Replace(path[len(path)-1])
		if len(last) > 60 {
			last = last[:60] + "..."
		}
	}
	return "id:" + last + "#" + hex.EncodeToString(sum[:4])
}

// Digest is the fake image digest of the container a path leads to.
func Digest(path []string) string {
	sum := sha256.Sum256([]byte("image:" + strings.Join(path, ".")))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (e *Engine) leaf(path []string, f *ast.Field) (any, error) {
	switch f.Name {
	case "id", "sync", "start", "stop":
		return ID(path), nil
	case "exitCode":
		return 0, nil
	case "stdout", "stderr", "contents":
		return "", nil
	case "export":
		return StringArg(f, "path"), nil
	case "publish":
		// Like the engine: the address it was given, pinned by digest.
		return StringArg(f, "address") + "@" + Digest(path), nil
	}
	return nil, fmt.Errorf("fake engine has no answer for %s.%s; give the test a Resolver for it", strings.Join(path, "."), f.Name)
}

// StringArg is a string argument's value, "" when absent.
func StringArg(f *ast.Field, name string) string {
	a := f.Arguments.ForName(name)
	if a == nil {
		return ""
	}
	v, err := a.Value.Value(nil)
	if err != nil {
		return ""
	}
	s, _ := v.(string)
	return s
}
