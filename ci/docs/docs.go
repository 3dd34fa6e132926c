// Package docs keeps the documentation true: every kgci command and flag
// that README.md or docs/*.md shows in code must exist in the built binary.
// The check lives in this package's tests; this file finds the invocations.
package docs

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// Invocation is one documented kgci command line.
type Invocation struct {
	Command string
	Flags   []string // without dashes or values
	Line    int      // 1-based line in the Markdown file
	Text    string   // the command line as written
}

var (
	fence     = regexp.MustCompile("^\\s*(```|~~~)")
	codeSpan  = regexp.MustCompile("`([^`]+)`")
	kgciCall  = regexp.MustCompile(`(?:go run \./ci/cmd/kgci|(?:^|[\s/])kgci)\s+([a-z][a-z0-9-]*)((?:\s+[^\s]+)*)`)
	flagWord  = regexp.MustCompile(`^--?([a-zA-Z][a-zA-Z0-9-]*)(?:=.*)?$`)
	separator = regexp.MustCompile(`\s(?:\|\||&&|[|;>]|2>&1|2>)\s`)
)

// Invocations finds the kgci commands shown in code (fenced blocks and
// inline code spans) of a Markdown document. Prose is ignored: "kgci is a
// CLI" is not a command. Backslash-continued lines count as one.
func Invocations(markdown string) []Invocation {
	var out []Invocation
	lines := strings.Split(markdown, "\n")
	inFence := false
	for i := 0; i < len(lines); i++ {
		line, start := lines[i], i+1
		if fence.MatchString(line) {
			inFence = !inFence
			continue
		}
		var code []string
		if inFence {
			for strings.HasSuffix(strings.TrimRight(line, " "), "\\") && i+1 < len(lines) {
				i++
				line = strings.TrimSuffix(strings.TrimRight(line, " "), "\\") + " " + lines[i]
			}
			code = []string{line}
		} else {
			for _, m := range codeSpan.FindAllStringSubmatch(line, -1) {
				code = append(code, m[1])
			}
		}
		for _, c := range code {
			// `a && b`: each part is its own command line.
			for _, part := range separator.Split(" "+c+" ", -1) {
				out = append(out, parse(part, start)...)
			}
		}
	}
	return out
}

func parse(s string, line int) []Invocation {
	var out []Invocation
	for _, m := range kgciCall.FindAllStringSubmatch(s, -1) {
		inv := Invocation{Command: m[1], Line: line, Text: strings.TrimSpace(m[0])}
		for _, w := range strings.Fields(m[2]) {
			// [--engine dagger|local] documents an optional flag.
			if f := flagWord.FindStringSubmatch(strings.Trim(w, "[](){}")); f != nil {
				inv.Flags = append(inv.Flags, f[1])
			}
		}
		out = append(out, inv)
	}
	return out
}

// Check runs `bin <command> --help` for each invocation and reports every
// command that fails and every documented flag its help does not list.
func Check(bin string, invs []Invocation) []error {
	var errs []error
	helps := map[string]string{}
	for _, inv := range invs {
		help, seen := helps[inv.Command]
		if !seen {
			var out bytes.Buffer
			cmd := exec.Command(bin, inv.Command, "--help")
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				errs = append(errs, fmt.Errorf("line %d: `%s`: `kgci %s --help` failed (%v):\n%s", inv.Line, inv.Text, inv.Command, err, out.String()))
				helps[inv.Command] = ""
				continue
			}
			help = out.String()
			helps[inv.Command] = help
		}
		if help == "" {
			continue
		}
		for _, f := range inv.Flags {
			if f == "help" || f == "h" {
				continue
			}
			// flag.PrintDefaults lists each flag as "  -name type".
			if !regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(f) + `(\s|$)`).MatchString(help) {
				errs = append(errs, fmt.Errorf("line %d: `%s`: kgci %s has no flag --%s (its --help lists no such flag)", inv.Line, inv.Text, inv.Command, f))
			}
		}
	}
	return errs
}
