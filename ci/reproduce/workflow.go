package reproduce

// The workflow side: the `dagger call` steps of a GitHub Actions workflow,
// as the Dagger action hands them to the dagger CLI.

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/shlex"
	"go.yaml.in/yaml/v3"
)

// DaggerAction is the action every Dagger step uses.
const DaggerAction = "dagger/dagger-for-github"

// Step is one use of the Dagger action.
type Step struct {
	Job    string // job id
	Name   string // step name
	JobIf  string // the job's `if:` condition
	If     string // the step's `if:` condition
	Uses   string // e.g. dagger/dagger-for-github@<sha>
	Verb   string // call, unless the step says otherwise
	Module string // with.module; empty means the module in the working directory
	// Version is the dagger CLI version the action installs.
	Version string
	// Args is what the action hands to the dagger CLI after its own
	// preprocessing: newlines and backslash-newlines become spaces.
	Args string
}

type workflowFile struct {
	Jobs yaml.Node `yaml:"jobs"`
}

type jobDef struct {
	If    string    `yaml:"if"`
	Steps []stepDef `yaml:"steps"`
}

type stepDef struct {
	Name string            `yaml:"name"`
	If   string            `yaml:"if"`
	Uses string            `yaml:"uses"`
	With map[string]string `yaml:"with"`
}

// DaggerSteps returns the Dagger action steps in file order (jobs in the
// order they are written, steps in job order).
func DaggerSteps(src []byte) ([]Step, error) {
	var wf workflowFile
	if err := yaml.Unmarshal(src, &wf); err != nil {
		return nil, fmt.Errorf("parse workflow: %w", err)
	}
	if wf.Jobs.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("workflow has no jobs mapping")
	}
	var out []Step
	for i := 0; i+1 < len(wf.Jobs.Content); i += 2 {
		id := wf.Jobs.Content[i].Value
		var j jobDef
		if err := wf.Jobs.Content[i+1].Decode(&j); err != nil {
			return nil, fmt.Errorf("job %s: %w", id, err)
		}
		for _, s := range j.Steps {
			if !strings.HasPrefix(s.Uses, DaggerAction+"@") {
				continue
			}
			verb := s.With["verb"]
			if verb == "" {
				verb = "call"
			}
			args := s.With["args"]
			if args == "" && s.With["call"] != "" {
				verb, args = "call", s.With["call"]
			}
			out = append(out, Step{
				Job: id, Name: s.Name, JobIf: j.If, If: s.If, Uses: s.Uses,
				Verb: verb, Module: s.With["module"], Version: s.With["version"], Args: foldLines(args),
			})
		}
	}
	return out, nil
}

// foldLines does what dagger-for-github does to its inputs before the
// shell sees them: `\`+newline and newline both become a space.
func foldLines(s string) string {
	s = strings.ReplaceAll(s, "\\\n", " ")
	return strings.TrimSpace(strings.ReplaceAll(s, "\n", " "))
}

var expr = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

// Expand replaces every ${{ expression }} with lookup's answer, as GitHub
// does before the step runs.
func Expand(s string, lookup func(expression string) (string, error)) (string, error) {
	var firstErr error
	out := expr.ReplaceAllStringFunc(s, func(m string) string {
		v, err := lookup(expr.FindStringSubmatch(m)[1])
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return v
	})
	return out, firstErr
}

// Split splits args into words as a POSIX shell does for the action's
// unquoted expansion (quotes and backslashes, by github.com/google/shlex).
// Anything a shell would expand or treat as an operator is refused, quoted
// or not: dagger arguments are plain words, and words that depend on the
// runner's shell state could not be reproduced elsewhere.
func Split(s string) ([]string, error) {
	if i := strings.IndexAny(s, "$`"); i >= 0 {
		return nil, fmt.Errorf("shell expansion (%c) in %q: CI and a reproduction would see different values; use a literal or a Dagger secret (env://NAME)", s[i], s)
	}
	if i := strings.IndexAny(s, ";|&<>(){}*?[#~"); i >= 0 {
		return nil, fmt.Errorf("shell metacharacter %q in %q: keep dagger args to plain words", s[i], s)
	}
	words, err := shlex.Split(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	return words, nil
}
