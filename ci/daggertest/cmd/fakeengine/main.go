// Command fakeengine runs a command inside a fake Dagger session and
// writes the GraphQL it sent, pretty-printed and sorted, to a file:
//
//	fakeengine -o queries.txt -- codegen generate-typedefs ...
//
// ci/daggertest/codegen.sh uses it to record the module API that Dagger's
// own codegen registers for main.go.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"

	"github.com/kidney-genetics/kidney-genetics-db/ci/daggertest"
)

func main() {
	out := flag.String("o", "", "file for the recorded queries")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: fakeengine -o FILE -- COMMAND [ARGS...]")
		os.Exit(2)
	}
	e := daggertest.New(nil)
	defer e.Close()
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Env = append(os.Environ(), e.Env()...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	runErr := cmd.Run()
	if err := os.WriteFile(*out, []byte(e.Transcript()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "fakeengine:", err)
		os.Exit(1)
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "fakeengine: %s: %v\n", flag.Arg(0), runErr)
		os.Exit(1)
	}
}
