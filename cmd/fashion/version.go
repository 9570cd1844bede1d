package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/fashion-classifier/fashion/internal/buildinfo"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/predictor"
)

// versionReport is what "fashion version -json" prints: the build and the
// model the binary would serve. ModelError is set instead of Model when the
// model cannot be loaded, so the build half is still reported.
type versionReport struct {
	buildinfo.Info
	Model *modelfile.Info `json:"model,omitempty"`
	// PhotoModel is the model that answers photos when two are served
	// (the embedded default, or -photo-model); Model answers the rest.
	PhotoModel *modelfile.Info `json:"photo_model,omitempty"`
	ModelError string          `json:"model_error,omitempty"`
}

// runVersion prints the binary's version, commit, toolchain and platform and
// the name, architecture, checksum and test accuracy of the model it would
// serve (-model, else WEIGHT_PATH's, else the embedded one), opened exactly
// as serve opens it. A model that fails to load is reported in the output,
// because the build information is still worth printing, and then as the
// command's error.
func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr)
	models := addModelFlags(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: version takes only flags", fs.Args())
	}

	rep := versionReport{Info: buildinfo.Read()}
	if c, err := models.open(ctx); err != nil {
		rep.ModelError = err.Error()
	} else {
		info := c.Info()
		rep.Model = &info
		if r, ok := c.(*predictor.Routed); ok {
			photo := r.Photo.Info()
			rep.PhotoModel = &photo
		}
	}

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("writing version report: %w", err)
		}
	} else if err := writeVersionText(stdout, rep); err != nil {
		return err
	}
	if rep.ModelError != "" {
		return fmt.Errorf("model unavailable: %s", rep.ModelError)
	}
	return nil
}

// writeVersionText prints rep as aligned "key: value" lines for people.
func writeVersionText(w io.Writer, rep versionReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	commit := rep.Commit
	if rep.Modified {
		commit += " (modified)"
	}
	fmt.Fprintf(tw, "version:\t%s\n", rep.Version)
	fmt.Fprintf(tw, "commit:\t%s\n", commit)
	fmt.Fprintf(tw, "go:\t%s\n", rep.GoVersion)
	fmt.Fprintf(tw, "platform:\t%s/%s\n", rep.OS, rep.Arch)
	if m := rep.Model; m != nil {
		writeModelText(tw, "model", "test accuracy", m)
		if p := rep.PhotoModel; p != nil {
			fmt.Fprintf(tw, "routing:\t28×28 dataset-like images → %s; photos → %s\n", m.Name, p.Name)
			writeModelText(tw, "photo model", "photo model test accuracy", p)
		}
	} else {
		fmt.Fprintf(tw, "model:\tunavailable: %s\n", rep.ModelError)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing version report: %w", err)
	}
	return nil
}

// writeModelText prints one model's lines of the version report, its keys
// starting with prefix.
func writeModelText(tw io.Writer, prefix, accuracyKey string, m *modelfile.Info) {
	fmt.Fprintf(tw, "%s:\t%s (%s, %d parameters)\n", prefix, m.Name, m.Arch, m.Params)
	fmt.Fprintf(tw, "%s source:\t%s\n", prefix, m.Source)
	fmt.Fprintf(tw, "%s precision:\t%s\n", prefix, m.Precision)
	fmt.Fprintf(tw, "%s storage:\t%s\n", prefix, m.Storage)
	fmt.Fprintf(tw, "%s sha256:\t%s\n", prefix, m.SHA256)
	if m.TestAccuracy > 0 {
		fmt.Fprintf(tw, "%s:\t%.4f\n", accuracyKey, m.TestAccuracy)
	} else {
		fmt.Fprintf(tw, "%s:\tunknown\n", accuracyKey)
	}
}
