// Package buildinfo reports which build of fashion is running: the release
// version and source commit stamped in by the linker, and the toolchain and
// platform it was built for. Operators read it from "fashion version" and
// from the server, so a running binary can always be traced to its source.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version is the release version, set at link time with
// -ldflags "-X github.com/fashion-classifier/fashion/internal/buildinfo.Version=v1.2.3"
// by deploy/build.sh. It is a variable only so the linker can set it; nothing
// assigns it at run time.
var Version = "dev"

// Commit is the source revision, set at link time like Version. It is a
// variable only so the linker can set it; nothing assigns it at run time.
var Commit = "unknown"

// Info describes one build of the binary.
type Info struct {
	Version   string `json:"version"`    // release version, "dev" when unstamped
	Commit    string `json:"commit"`     // source revision, "unknown" when unstamped
	Modified  bool   `json:"modified"`   // built from a work tree with uncommitted changes (from VCS info only)
	GoVersion string `json:"go_version"` // toolchain that built the binary, e.g. "go1.26.8"
	OS        string `json:"os"`         // GOOS the binary was built for
	Arch      string `json:"arch"`       // GOARCH the binary was built for
}

// Read returns the running binary's build information. The linker-stamped
// Version and Commit win; when they were not stamped (a plain "go build" or
// "go install"), Read falls back to what the Go toolchain recorded: the
// module version for "go install module@version" and the VCS revision for a
// build inside a git work tree.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return resolve(Version, Commit, bi)
}

// resolve merges the linker-stamped values with the toolchain's build
// information bi, which may be nil when the binary carries none.
func resolve(version, commit string, bi *debug.BuildInfo) Info {
	if version == "" {
		version = "dev"
	}
	if commit == "" {
		commit = "unknown"
	}
	in := Info{
		Version:   version,
		Commit:    commit,
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS,
		Arch:      runtime.GOARCH,
	}
	if bi == nil {
		return in
	}
	if bi.GoVersion != "" {
		in.GoVersion = bi.GoVersion
	}
	stampedCommit := commit != "unknown"
	if version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		in.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if !stampedCommit && s.Value != "" {
				in.Commit = s.Value
			}
		case "vcs.modified":
			// Only meaningful for the revision it accompanies: a stamped
			// commit came from deploy/build.sh, which reports "-dirty"
			// in the version instead.
			if !stampedCommit {
				in.Modified = s.Value == "true"
			}
		case "GOOS":
			in.OS = s.Value
		case "GOARCH":
			in.Arch = s.Value
		}
	}
	return in
}
