// Command fashion trains, evaluates and serves a Fashion-MNIST clothing classifier.
//
// Usage:
//
//	fashion <command> [flags]
//
// Run "fashion help" for the list of commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand of the CLI: a flag-parsing entry point that
// delegates all real work to the internal packages.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"data":      {"check or download the Fashion-MNIST IDX files (data verify|fetch)", runData},
		"train":     {"train a model and write it as safetensors", runTrain},
		"eval":      {"measure a model's accuracy on the official test set", runEval},
		"quantize":  {"write an int8 (post-training quantized) copy of a model file", runQuantize},
		"convert":   {"write a copy of a model file with its weights stored as f16 (half precision) or f32", runConvert},
		"calibrate": {"fit temperature scaling and the out-of-distribution threshold on held-out data into a model file", runCalibrate},
		"export":    {"write a model in another format (-format onnx)", runExport},
		"predict":   {"classify image files", runPredict},
		"serve":     {"run the HTTP classification service", runServe},
		"version":   {"print version, commit and embedded model information", runVersion},
	}
}

func main() {
	os.Exit(runWithSignals(os.Args[1:]))
}

// runWithSignals runs the command line args with SIGINT and SIGTERM
// cancelling its context, so that every command — a model load included —
// stops when asked to.
func runWithSignals(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, args, os.Stdout, os.Stderr)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "fashion: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	if err := c.run(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "fashion %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "fashion trains, evaluates and serves a Fashion-MNIST clothing classifier.")
	fmt.Fprintln(w, "\nUsage:\n\n\tfashion <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "\t%-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun \"fashion <command> -h\" for a command's flags.")
}

// newFlagSet returns a flag set that reports errors instead of exiting, so
// every command's failures flow through run's single error path.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("fashion "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
