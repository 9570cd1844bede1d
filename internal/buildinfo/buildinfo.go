// Package buildinfo reports which build of fashion is running: the release
// version and source commit stamped in by the linker, and the toolchain and
// platform it was built for. Operators read it from "fashion version" and
// from the server, so a running binary can always be traced to its source.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Release is the version of this source tree, the one version every
// artefact reports: "fashion version", the server's /openapi.json and GET
// /v2, the image tag deploy/image-check writes, the Dockerfile's default
// and the tags in the docs (a test checks them). Bump it to release.
const Release = "1.0.0"

// Version is the version the binary reports: Release unless deploy/build.sh
// was given another with VERSION, which it sets at link time with
// -ldflags "-X github.com/fashion-classifier/fashion/internal/buildinfo.Version=1.2.3".
// It is a variable only so the linker can set it; nothing assigns it at run
// time.
var Version = Release

// Commit is the source revision, set at link time like Version. It is a
// variable only so the linker can set it; nothing assigns it at run time.
var Commit = "unknown"

// Info describes one build of the binary.
type Info struct {
	Version   string `json:"version"`    // release version, Release unless stamped
	Commit    string `json:"commit"`     // source revision, "unknown" when unstamped
	Modified  bool   `json:"modified"`   // built from a work tree with uncommitted changes (from VCS info only)
	GoVersion string `json:"go_version"` // toolchain that built the binary, e.g. "go1.26.8"
	OS        string `json:"os"`         // GOOS the binary was built for
	Arch      string `json:"arch"`       // GOARCH the binary was built for
}

// Read returns the running binary's build information. The version is
// Version; a linker-stamped Commit wins, and when it was not stamped (a
// plain "go build" or "go install"), Read falls back to the VCS revision the
// Go toolchain recorded for a build inside a git work tree.
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
		version = Release
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
