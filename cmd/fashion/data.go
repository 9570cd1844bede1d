package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/fashion-classifier/fashion/internal/idx"
)

// runData dispatches "fashion data verify" and "fashion data fetch".
func runData(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		dataUsage(stderr)
		return errors.New("missing subcommand: verify or fetch")
	}
	switch args[0] {
	case "verify":
		return runDataVerify(args[1:], stdout, stderr)
	case "fetch":
		return runDataFetch(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		dataUsage(stderr)
		return flag.ErrHelp
	}
	dataUsage(stderr)
	return fmt.Errorf("unknown subcommand %q: want verify or fetch", args[0])
}

func dataUsage(w io.Writer) {
	fmt.Fprintf(w, `Usage:

	fashion data verify [-data DIR]
		check the SHA-256 of the four Fashion-MNIST files; exits non-zero on any problem
	fashion data fetch [-dir DIR] [-url BASE] [-retries N]
		download the four files, verify them and move them into place

Without -data, verify looks at $%s, ./%s and %s.
`, idx.EnvVar, idx.LocalDir, idx.SystemDir)
}

func runDataVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("data verify", stderr)
	dataFlag := fs.String("data", "", "directory holding the dataset (default: $"+idx.EnvVar+", ./"+idx.LocalDir+", "+idx.SystemDir+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	dir, err := idx.FindDir(*dataFlag, os.Getenv)
	if err != nil {
		return err
	}
	statuses, verr := idx.Verify(dir)
	if statuses == nil {
		return verr
	}
	fmt.Fprintf(stdout, "%s\n\n", dir)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tSTATUS\tSHA256 (as stored, as sha256sum prints it)")
	for _, st := range statuses {
		file := st.Name
		if st.Path != "" {
			file = st.Path
		}
		var detail string
		switch st.Status {
		case idx.StatusOK:
			detail = st.Stored
		case idx.StatusMissing:
			detail = "neither " + st.Name + " nor " + st.Name + ".gz exists"
		case idx.StatusMismatch:
			detail = st.Stored + " (content sha256 " + st.Got + ", want " + st.Want + ")"
		case idx.StatusError:
			detail = st.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", file, st.Status, detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nThe official checksums are of the decompressed content, so any mirror's\ncompression verifies; the column above is of the bytes on disk.")
	if verr != nil {
		return fmt.Errorf("%w\nrun \"fashion data fetch -dir %s\" to download the files again", verr, dir)
	}
	return nil
}

func runDataFetch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("data fetch", stderr)
	dir := fs.String("dir", idx.LocalDir, "directory to write the files to")
	base := fs.String("url", idx.DefaultBaseURL, "base URL of the mirror")
	retries := fs.Int("retries", 4, "retries per file after a transient failure, with exponential backoff")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	err := idx.Download(ctx, idx.DownloadOptions{
		BaseURL:  *base,
		Dir:      *dir,
		Retries:  *retries,
		Progress: stderr,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "all files in %s are present and verified\n", *dir)
	return nil
}
