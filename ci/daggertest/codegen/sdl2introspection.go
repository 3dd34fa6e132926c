//go:build ignore

// Command sdl2introspection turns the GraphQL schema Dagger publishes with
// its docs (docs/docs-graphql/schema.graphqls) into the introspection JSON
// that cmd/codegen reads, so that Dagger's own codegen runs without an
// engine. codegen.sh copies it into a dagger/dagger checkout and runs it
// there, where cmd/codegen/introspection is importable:
//
//	go run ./cmd/sdl2introspection SCHEMA.graphqls v0.20.0 > introspection.json
//
// The SDL lacks two things the engine's introspection carries: the
// @enumValue directives of compatibility aliases (REGULAR_TYPE for REGULAR)
// and input field defaults. Both are restored below; codegen.sh proves the
// result by regenerating the published library and comparing its code with
// dagger.io/dagger of the same version.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/dagger/dagger/cmd/codegen/introspection"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
)

// inputDefaults are input field defaults the SDL printer dropped.
var inputDefaults = map[string]string{"PortForward.protocol": "TCP"}

var kinds = map[string]introspection.TypeKind{}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: sdl2introspection SCHEMA.graphqls SCHEMA_VERSION")
		os.Exit(2)
	}
	sdl, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s, gerr := gqlparser.LoadSchema(&ast.Source{Name: os.Args[1], Input: string(sdl)})
	if gerr != nil {
		fmt.Fprintln(os.Stderr, gerr)
		os.Exit(1)
	}
	names := make([]string, 0, len(s.Types))
	for n, d := range s.Types {
		kinds[n] = introspection.TypeKind(d.Kind)
		names = append(names, n)
	}
	sort.Strings(names)
	out := &introspection.Schema{}
	out.QueryType.Name = s.Query.Name
	for _, n := range names {
		out.Types = append(out.Types, convert(s.Types[n]))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(introspection.Response{Schema: out, SchemaVersion: os.Args[2]}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func ref(t *ast.Type) *introspection.TypeRef {
	r := &introspection.TypeRef{Kind: kinds[t.NamedType], Name: t.NamedType}
	if t.Elem != nil {
		r = &introspection.TypeRef{Kind: introspection.TypeKindList, OfType: ref(t.Elem)}
	}
	if t.NonNull {
		return &introspection.TypeRef{Kind: introspection.TypeKindNonNull, OfType: r}
	}
	return r
}

func directives(ds ast.DirectiveList) introspection.Directives {
	out := introspection.Directives{}
	for _, d := range ds {
		if d.Name == "deprecated" {
			continue // introspection reports it as isDeprecated instead
		}
		nd := &introspection.Directive{Name: d.Name}
		for _, a := range d.Arguments {
			v, err := a.Value.Value(nil)
			if err != nil {
				panic(err)
			}
			b, _ := json.Marshal(v)
			js := string(b)
			nd.Args = append(nd.Args, &introspection.DirectiveArg{Name: a.Name, Value: &js})
		}
		out = append(out, nd)
	}
	return out
}

func deprecation(ds ast.DirectiveList) (bool, *string) {
	d := ds.ForName("deprecated")
	if d == nil {
		return false, nil
	}
	reason := "No longer supported"
	if a := d.Arguments.ForName("reason"); a != nil {
		reason = a.Value.Raw
	}
	return true, &reason
}

func inputValue(name, desc string, typ *ast.Type, def *ast.Value, ds ast.DirectiveList) introspection.InputValue {
	iv := introspection.InputValue{Name: name, Description: desc, TypeRef: ref(typ), Directives: directives(ds)}
	if def != nil {
		v := def.String()
		iv.DefaultValue = &v
	}
	iv.IsDeprecated, iv.DeprecationReason = deprecation(ds)
	return iv
}

func convert(d *ast.Definition) *introspection.Type {
	t := &introspection.Type{Kind: introspection.TypeKind(d.Kind), Name: d.Name, Description: d.Description, Directives: directives(d.Directives), Interfaces: []*introspection.Type{}}
	for _, i := range d.Interfaces {
		t.Interfaces = append(t.Interfaces, &introspection.Type{Kind: introspection.TypeKindInterface, Name: i})
	}
	for _, f := range d.Fields {
		if strings.HasPrefix(f.Name, "__") {
			continue
		}
		if d.Kind == ast.InputObject {
			iv := inputValue(f.Name, f.Description, f.Type, f.DefaultValue, f.Directives)
			if v, ok := inputDefaults[d.Name+"."+f.Name]; ok && iv.DefaultValue == nil {
				iv.DefaultValue = &v
			}
			t.InputFields = append(t.InputFields, iv)
			continue
		}
		nf := &introspection.Field{Name: f.Name, Description: f.Description, TypeRef: ref(f.Type), Directives: directives(f.Directives), Args: introspection.InputValues{}}
		for _, a := range f.Arguments {
			nf.Args = append(nf.Args, inputValue(a.Name, a.Description, a.Type, a.DefaultValue, a.Directives))
		}
		nf.IsDeprecated, nf.DeprecationReason = deprecation(f.Directives)
		t.Fields = append(t.Fields, nf)
	}
	for i, e := range d.EnumValues {
		ev := introspection.EnumValue{Name: e.Name, Description: e.Description, Directives: directives(e.Directives)}
		if a := aliasOf(d.EnumValues[:i], e.Name); a != "" {
			v, _ := json.Marshal(a)
			js := string(v)
			ev.Directives = append(ev.Directives, &introspection.Directive{Name: "enumValue", Args: []*introspection.DirectiveArg{{Name: "value", Value: &js}}})
		}
		ev.IsDeprecated, ev.DeprecationReason = deprecation(e.Directives)
		t.EnumValues = append(t.EnumValues, ev)
	}
	return t
}

func norm(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }

// aliasOf finds the earlier value that name is a compatibility alias of:
// the same word in another case (GZIP of Gzip) or with one of the suffixes
// Dagger has added or dropped over time (REGULAR_TYPE, STRING_KIND,
// LOCAL_SOURCE, OCIMediaTypes).
func aliasOf(earlier ast.EnumValueList, name string) string {
	n := norm(name)
	for _, e := range earlier {
		m := norm(e.Name)
		for _, suffix := range []string{"", "type", "kind", "source", "mediatypes"} {
			if n+suffix == m || m+suffix == n {
				return e.Name
			}
		}
	}
	return ""
}
