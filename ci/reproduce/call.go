package reproduce

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Call is a `dagger call` command line resolved against a module.
type Call struct {
	Constructor []Flag       // flags before the first function (e.g. --profile)
	Dagger      []Flag       // dagger CLI flags among them (e.g. --progress)
	Chain       []Invocation // the module function, then what is called on its result
}

// Flag is one --name[=value] on the command line.
type Flag struct {
	Name  string // kebab-case, without dashes
	Value string
}

// Invocation is one function in the chain.
type Invocation struct {
	Name    string
	Flags   []Flag
	Returns string // Go type the function returns
}

// Function is the module function the call runs.
func (c *Call) Function() string { return c.Chain[0].Name }

// ConstructorFlag returns the value of a constructor flag, if given.
func (c *Call) ConstructorFlag(name string) (string, bool) {
	for _, f := range c.Constructor {
		if f.Name == name {
			return f.Value, true
		}
	}
	return "", false
}

// Flag returns the value of a flag of the module function, if given.
func (c *Call) Flag(name string) (string, bool) {
	for _, f := range c.Chain[0].Flags {
		if f.Name == name {
			return f.Value, true
		}
	}
	return "", false
}

// daggerFlags are `dagger call`'s own flags that may precede the function:
// true means the flag takes a value.
var daggerFlags = map[string]bool{
	"m": true, "mod": true, "o": true, "output": true, "progress": true,
	"j": false, "json": false, "i": false, "interactive": false, "s": false, "silent": false,
	"q": false, "quiet": false, "v": false, "vv": false, "vvv": false, "d": false, "debug": false,
	"E": false, "no-exit": false,
}

// core lists the core API functions a workflow may chain onto a module
// function's result, with their flags. Only what a CI step plausibly uses.
var core = map[string]map[string]*Function{
	"dagger.Directory": {
		"export":    {CLIName: "export", Returns: "string", Params: []Param{{Flag: "path", Type: "string"}, {Flag: "wipe", Type: "bool", Optional: true}, {Flag: "allow-parent-dir", Type: "bool", Optional: true}}},
		"file":      {CLIName: "file", Returns: "*dagger.File", Params: []Param{{Flag: "path", Type: "string"}}},
		"directory": {CLIName: "directory", Returns: "*dagger.Directory", Params: []Param{{Flag: "path", Type: "string"}}},
		"entries":   {CLIName: "entries", Returns: "[]string", Params: []Param{{Flag: "path", Type: "string", Optional: true}}},
		"terminal":  {CLIName: "terminal", Returns: "*dagger.Directory", Params: []Param{{Flag: "cmd", Type: "[]string", Optional: true}}},
	},
	"dagger.File": {
		"export":   {CLIName: "export", Returns: "string", Params: []Param{{Flag: "path", Type: "string"}, {Flag: "allow-parent-dir", Type: "bool", Optional: true}}},
		"contents": {CLIName: "contents", Returns: "string"},
	},
	"dagger.Container": {
		"export":   {CLIName: "export", Returns: "string", Params: []Param{{Flag: "path", Type: "string"}}},
		"publish":  {CLIName: "publish", Returns: "string", Params: []Param{{Flag: "address", Type: "string"}}},
		"stdout":   {CLIName: "stdout", Returns: "string"},
		"stderr":   {CLIName: "stderr", Returns: "string"},
		"terminal": {CLIName: "terminal", Returns: "*dagger.Container", Params: []Param{{Flag: "cmd", Type: "[]string", Optional: true}}},
	},
}

// secretURL matches the dagger CLI's secret references: env://NAME and
// the older env:NAME form (likewise file, cmd, op, vault, libsecret).
var secretURL = regexp.MustCompile(`^(env|file|cmd|op|vault|libsecret):.+`)

// ParseCall resolves the words of a `dagger call` (after the verb) against
// the module: every function and flag must exist, every required argument
// must be given, and secrets must be references, never literal values.
func (m *Module) ParseCall(words []string) (*Call, error) {
	c := &Call{}
	i := 0
	// Before the first function: dagger's own flags and the constructor's.
	for ; i < len(words) && strings.HasPrefix(words[i], "-"); i++ {
		name, value, hasValue := splitFlag(words[i])
		if takesValue, ok := daggerFlags[name]; ok {
			if takesValue && !hasValue {
				if i+1 >= len(words) {
					return nil, fmt.Errorf("dagger flag --%s needs a value", name)
				}
				i++
				value = words[i]
			}
			c.Dagger = append(c.Dagger, Flag{Name: name, Value: value})
			continue
		}
		f, n, err := takeFlag(&m.Constructor, "the constructor (New)", words, i)
		if err != nil {
			return nil, err
		}
		c.Constructor = append(c.Constructor, f)
		i = n
	}
	if err := missing(&m.Constructor, "the constructor (New)", c.Constructor); err != nil {
		return nil, err
	}
	if i >= len(words) {
		return nil, fmt.Errorf("no function named in %q: main.go has %s", strings.Join(words, " "), strings.Join(m.FunctionNames(), ", "))
	}

	fns, where := m.Functions, "main.go's "+m.Object
	for i < len(words) {
		name := words[i]
		fn, ok := fns[name]
		if !ok {
			var have []string
			for n := range fns {
				have = append(have, n)
			}
			return nil, fmt.Errorf("function %q is not in %s (which has: %s)", name, where, strings.Join(sorted(have), ", "))
		}
		inv := Invocation{Name: name, Returns: fn.Returns}
		i++
		for i < len(words) && strings.HasPrefix(words[i], "-") {
			f, n, err := takeFlag(fn, name, words, i)
			if err != nil {
				return nil, err
			}
			inv.Flags = append(inv.Flags, f)
			i = n + 1
		}
		if err := missing(fn, name, inv.Flags); err != nil {
			return nil, err
		}
		c.Chain = append(c.Chain, inv)
		if i < len(words) {
			t := strings.TrimPrefix(fn.Returns, "*")
			if fns = m.Objects[t]; fns == nil {
				fns = core[t]
			}
			where = t + " (returned by " + name + ")"
			if fns == nil {
				return nil, fmt.Errorf("%s returns %s, on which nothing can be chained, but the call goes on with %q", name, fn.Returns, strings.Join(words[i:], " "))
			}
		}
	}
	return c, nil
}

// takeFlag reads the flag at words[i] (and its value) for fn; it returns
// the index of the last word consumed.
func takeFlag(fn *Function, what string, words []string, i int) (Flag, int, error) {
	name, value, hasValue := splitFlag(words[i])
	// The dagger CLI normalises --imagesDir to --images-dir.
	name = Kebab(name)
	p, ok := fn.Param(name)
	if !ok {
		var have []string
		for _, p := range fn.Params {
			have = append(have, "--"+p.Flag)
		}
		return Flag{}, i, fmt.Errorf("flag --%s is not an argument of %s (which takes: %s)", name, what, strings.Join(have, " "))
	}
	if !hasValue {
		if p.Type == "bool" {
			value = "true"
		} else {
			if i+1 >= len(words) {
				return Flag{}, i, fmt.Errorf("--%s of %s needs a value", name, what)
			}
			i++
			value = words[i]
		}
	}
	if p.Type == "*dagger.Secret" && !secretURL.MatchString(value) {
		return Flag{}, i, fmt.Errorf("--%s of %s is a secret: pass a reference such as env://NAME, never the value itself", name, what)
	}
	return Flag{Name: name, Value: value}, i, nil
}

func missing(fn *Function, what string, given []Flag) error {
	for _, p := range fn.Params {
		if p.Optional {
			continue
		}
		found := false
		for _, f := range given {
			found = found || f.Name == p.Flag
		}
		if !found {
			return fmt.Errorf("%s needs --%s (a required argument in the Go source)", what, p.Flag)
		}
	}
	return nil
}

func splitFlag(w string) (name, value string, hasValue bool) {
	w = strings.TrimLeft(w, "-")
	name, value, hasValue = strings.Cut(w, "=")
	return name, value, hasValue
}

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}
