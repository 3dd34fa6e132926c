package reproduce

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Module is what the dagger CLI derives from a Go module's source: the
// main object's constructor and functions, under their CLI names.
type Module struct {
	Object      string               // Go type of the main object
	Constructor Function             // flags accepted before the first function
	Functions   map[string]*Function // by CLI name
	// Objects holds the functions of every other object type the module
	// defines, so a chain through a returned module object can be checked.
	Objects map[string]map[string]*Function
}

// Function is one exported method (or New).
type Function struct {
	GoName  string
	CLIName string
	Params  []Param
	Returns string // Go type of the first result, e.g. *dagger.Directory
}

// Param is one argument of a function, as a CLI flag.
type Param struct {
	GoName   string
	Flag     string // kebab-case, without dashes
	Type     string // Go type expression, e.g. string, bool, *dagger.Secret
	Optional bool   // +optional, +default or +defaultPath
	Default  string // the +default value, unquoted
}

// Param returns the parameter whose flag is name.
func (f *Function) Param(name string) (Param, bool) {
	for _, p := range f.Params {
		if p.Flag == name {
			return p, true
		}
	}
	return Param{}, false
}

// FunctionNames lists the CLI names, sorted, for error messages.
func (m *Module) FunctionNames() []string {
	var ns []string
	for n := range m.Functions {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// ParseModule reads the Go files of the Dagger module in dir (package
// main, where dagger.json points its source). The main object is the type
// New returns; without New, the object named after dagger.json's "name".
func ParseModule(dir string) (*Module, error) {
	fset := token.NewFileSet()
	matches, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var files []*ast.File
	for _, p := range matches {
		if strings.HasSuffix(p, "_test.go") || filepath.Base(p) == "dagger.gen.go" {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", p, err)
		}
		if f.Name.Name == "main" {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no Dagger module source (package main *.go) in %s", dir)
	}

	methods := map[string]map[string]*Function{}
	add := func(recv string, fn *Function) {
		if methods[recv] == nil {
			methods[recv] = map[string]*Function{}
		}
		methods[recv][fn.CLIName] = fn
	}
	var ctor *Function
	for _, f := range files {
		for _, d := range f.Decls {
			if gd, ok := d.(*ast.GenDecl); ok {
				// Exported fields of an object are functions too
				// (dagger call build backend), unless +private.
				for _, sp := range gd.Specs {
					ts, ok := sp.(*ast.TypeSpec)
					if !ok {
						continue
					}
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					for _, field := range st.Fields.List {
						if docHas(field.Doc, "+private") {
							continue
						}
						for _, n := range field.Names {
							if n.IsExported() {
								add(ts.Name.Name, &Function{GoName: n.Name, CLIName: Kebab(n.Name), Returns: typeString(field.Type)})
							}
						}
					}
				}
				continue
			}
			fd, ok := d.(*ast.FuncDecl)
			if !ok || !fd.Name.IsExported() && fd.Name.Name != "New" {
				continue
			}
			fn := parseFunc(f, fd)
			switch {
			case fd.Recv == nil && fd.Name.Name == "New":
				ctor = fn
			case fd.Recv != nil && len(fd.Recv.List) == 1:
				add(strings.TrimPrefix(typeString(fd.Recv.List[0].Type), "*"), fn)
			}
		}
	}

	m := &Module{Objects: methods}
	switch {
	case ctor != nil:
		m.Object = strings.TrimPrefix(ctor.Returns, "*")
		m.Constructor = *ctor
	default:
		name, err := moduleName(dir)
		if err != nil {
			return nil, err
		}
		m.Object = pascal(name)
	}
	m.Functions = methods[m.Object]
	if len(m.Functions) == 0 {
		return nil, fmt.Errorf("%s: the main object %s has no exported functions", dir, m.Object)
	}
	return m, nil
}

func parseFunc(f *ast.File, fd *ast.FuncDecl) *Function {
	fn := &Function{GoName: fd.Name.Name, CLIName: Kebab(fd.Name.Name)}
	if fd.Type.Results != nil && len(fd.Type.Results.List) > 0 {
		fn.Returns = typeString(fd.Type.Results.List[0].Type)
	}
	prevEnd := fd.Type.Params.Opening
	for _, field := range fd.Type.Params.List {
		typ := typeString(field.Type)
		prags := pragmas(f, prevEnd, field.Pos())
		_, opt := prags["+optional"]
		def, hasDef := prags["+default"]
		_, hasPath := prags["+defaultPath"]
		prevEnd = field.End()
		if typ == "context.Context" {
			continue
		}
		for _, n := range field.Names {
			fn.Params = append(fn.Params, Param{GoName: n.Name, Flag: Kebab(n.Name), Type: typ, Optional: opt || hasDef || hasPath, Default: def})
		}
	}
	return fn
}

// pragmas returns the Dagger pragmas (`// +optional`, `// +default="x"`)
// in the comments between from and to, with their unquoted values.
func pragmas(f *ast.File, from, to token.Pos) map[string]string {
	out := map[string]string{}
	for _, cg := range f.Comments {
		if cg.Pos() < from || cg.End() > to {
			continue
		}
		for _, c := range cg.List {
			text := strings.TrimSpace(strings.TrimPrefix(c.Text, "//"))
			if !strings.HasPrefix(text, "+") {
				continue
			}
			k, v, _ := strings.Cut(text, "=")
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			out[k] = v
		}
	}
	return out
}

func docHas(cg *ast.CommentGroup, pragma string) bool {
	if cg == nil {
		return false
	}
	for _, c := range cg.List {
		if strings.TrimSpace(strings.TrimPrefix(c.Text, "//")) == pragma {
			return true
		}
	}
	return false
}

func typeString(e ast.Expr) string {
	var b strings.Builder
	writeType(&b, e)
	return b.String()
}

func writeType(b *strings.Builder, e ast.Expr) {
	switch t := e.(type) {
	case *ast.Ident:
		b.WriteString(t.Name)
	case *ast.StarExpr:
		b.WriteString("*")
		writeType(b, t.X)
	case *ast.SelectorExpr:
		writeType(b, t.X)
		b.WriteString("." + t.Sel.Name)
	case *ast.ArrayType:
		b.WriteString("[]")
		writeType(b, t.Elt)
	default:
		fmt.Fprintf(b, "%T", e)
	}
}

func moduleName(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "dagger.json"))
	if err != nil {
		return "", fmt.Errorf("no New constructor in %s and no dagger.json to name the main object: %w", dir, err)
	}
	var cfg struct{ Name string }
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Name == "" {
		return "", fmt.Errorf("dagger.json in %s: no module name (%v)", dir, err)
	}
	return cfg.Name, nil
}

// words splits an identifier the way Dagger's caser does (the engine's
// strcase: split at case changes, before an upper-case letter that starts
// a word after an acronym, and on both sides of a run of digits). So
// TestE2e is test-e-2-e on the command line, not test-e2e.
func words(s string) []string {
	var out []string
	var cur []rune
	rs := []rune(s)
	flush := func() {
		if len(cur) > 0 {
			out = append(out, string(cur))
			cur = nil
		}
	}
	for i, r := range rs {
		if r == '-' || r == '_' || r == '.' || r == ' ' {
			flush()
			continue
		}
		if i > 0 && len(cur) > 0 {
			prev := rs[i-1]
			switch {
			case unicode.IsDigit(r) != unicode.IsDigit(prev):
				flush()
			case unicode.IsUpper(r) && unicode.IsLower(prev):
				flush()
			case unicode.IsUpper(r) && unicode.IsUpper(prev) && i+1 < len(rs) && unicode.IsLower(rs[i+1]):
				flush()
			}
		}
		cur = append(cur, r)
	}
	flush()
	return out
}

// Kebab is the dagger CLI's name for a Go function or parameter name.
func Kebab(s string) string {
	ws := words(s)
	for i := range ws {
		ws[i] = strings.ToLower(ws[i])
	}
	return strings.Join(ws, "-")
}

func pascal(s string) string {
	ws := words(s)
	for i, w := range ws {
		ws[i] = strings.ToUpper(w[:1]) + strings.ToLower(w[1:])
	}
	return strings.Join(ws, "")
}
