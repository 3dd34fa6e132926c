// Command kgci runs the Kidney Genetics pipeline against a BuildKit daemon and
// a Docker engine, without Dagger: the path our own CI runs for real. Each
// subcommand lives in its own file and registers itself in init().
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

type command struct {
	name    string
	summary string
	// run gets the arguments after the subcommand name. It owns flag
	// parsing so that `kgci NAME --help` prints that command's flags.
	run func(ctx context.Context, args []string) error
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

// errUsage marks errors for which usage has already been printed.
var errUsage = errors.New("usage")

func usage() {
	fmt.Fprintf(os.Stderr, "kgci: build, run and check the Kidney Genetics Database images\n\nUsage: kgci <command> [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'kgci <command> --help' for the flags of a command.\n")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "kgci: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	// Ctrl-C and SIGTERM cancel the context; every command cleans up what
	// it started when its context ends.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := c.run(ctx, os.Args[2:])
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "kgci %s: %v\n", c.name, err)
		os.Exit(1)
	}
}

// newFlags makes a FlagSet whose usage names the command.
func newFlags(name, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("kgci "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: kgci %s [flags]\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}
