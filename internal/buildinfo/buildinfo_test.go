package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{
			{Key: "GOOS", Value: "linux"},
			{Key: "GOARCH", Value: "arm64"},
			{Key: "vcs.revision", Value: rev},
			{Key: "vcs.modified", Value: modified},
		}
	}
	tests := []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            Info
	}{
		{
			name:    "no build info keeps defaults",
			version: Release, commit: "unknown",
			want: Info{Version: Release, Commit: "unknown", GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH},
		},
		{
			name:    "empty stamps fall back to defaults",
			version: "", commit: "",
			want: Info{Version: Release, Commit: "unknown", GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH},
		},
		{
			name:    "linker stamps win over vcs info",
			version: "v1.0.0", commit: "abc123",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.9.0"}, Settings: vcs("fff", "true")},
			want: Info{Version: "v1.0.0", Commit: "abc123", GoVersion: "go1.26.8", OS: "linux", Arch: "arm64"},
		},
		{
			name:    "unstamped build uses vcs revision",
			version: Release, commit: "unknown",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs("0123abcd", "true")},
			want: Info{Version: Release, Commit: "0123abcd", Modified: true, GoVersion: "go1.26.8", OS: "linux", Arch: "arm64"},
		},
		{
			name:    "the module version does not override the release",
			version: Release, commit: "unknown",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}},
			want: Info{Version: Release, Commit: "unknown", GoVersion: "go1.26.8", OS: runtime.GOOS, Arch: runtime.GOARCH},
		},
		{
			name:    "stamped version keeps vcs commit when commit unstamped",
			version: "v2.0.0", commit: "unknown",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: vcs("beef", "false")},
			want: Info{Version: "v2.0.0", Commit: "beef", GoVersion: runtime.Version(), OS: "linux", Arch: "arm64"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(tt.version, tt.commit, tt.bi)
			if got != tt.want {
				t.Errorf("resolve(%q, %q, …) = %+v, want %+v", tt.version, tt.commit, got, tt.want)
			}
		})
	}
}

func TestReadDefaults(t *testing.T) {
	// Tests are never linker-stamped, so Read must report the defaults or
	// what the toolchain recorded, and always the running platform.
	got := Read()
	if got.Version == "" || got.Commit == "" {
		t.Errorf("Read() = %+v, want non-empty version and commit", got)
	}
	if got.OS != runtime.GOOS || got.Arch != runtime.GOARCH {
		t.Errorf("Read() platform = %s/%s, want %s/%s", got.OS, got.Arch, runtime.GOOS, runtime.GOARCH)
	}
}
