package main

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseDockerfile(t *testing.T) {
	const build = "FROM golang:1.26 AS build\nRUN deploy/build.sh /rootfs/fashion\n"
	tests := []struct {
		name    string
		text    string
		args    map[string]string
		want    *dockerImage
		wantErr string
	}{
		{
			name: "scratch stage with every supported instruction",
			text: build + `FROM scratch
ARG VERSION=dev
ARG COMMIT="unknown"
LABEL a.version="$VERSION" \
      # a comment between continuation lines
      a.revision=${COMMIT} a.title="fashion classifier"
COPY --from=build /rootfs/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
ENV LEGACY some value
WORKDIR /
USER 65532:65532
EXPOSE 8080 9090/udp
ENTRYPOINT ["/fashion", "serve"]
CMD ["-addr", ":8080"]
`,
			args: map[string]string{"VERSION": "1.0.0"},
			want: &dockerImage{
				User: "65532:65532", Uid: 65532, Gid: 65532,
				ExposedPorts: []string{"8080/tcp", "9090/udp"},
				Env:          []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "LEGACY=some value"},
				Labels:       map[string]string{"a.version": "1.0.0", "a.revision": "unknown", "a.title": "fashion classifier"},
				Entrypoint:   []string{"/fashion", "serve"},
				Cmd:          []string{"-addr", ":8080"},
				WorkingDir:   "/",
				BuildScript:  true,
			},
		},
		{
			name: "build script must be in an earlier stage",
			text: "FROM scratch\nUSER 1:1\n",
			want: &dockerImage{User: "1:1", Uid: 1, Gid: 1, Labels: map[string]string{}},
		},
		{name: "no FROM", text: "USER 1:1\n", wantErr: "no FROM"},
		{name: "healthcheck is refused", text: build + "FROM scratch\nHEALTHCHECK CMD [\"/fashion\"]\n", wantErr: "HEALTHCHECK in the final stage"},
		{name: "RUN in final stage is refused", text: build + "FROM scratch\nRUN true\n", wantErr: "RUN in the final stage"},
		{name: "named user", text: build + "FROM scratch\nUSER nonroot\n", wantErr: "must be numeric"},
		{name: "root user", text: build + "FROM scratch\nUSER 0:0\n", wantErr: "is root"},
		{name: "shell-form entrypoint", text: build + "FROM scratch\nENTRYPOINT /fashion serve\n", wantErr: "exec (JSON array) form"},
		{name: "bad port", text: build + "FROM scratch\nEXPOSE http\n", wantErr: "not a port"},
		{name: "port out of range", text: build + "FROM scratch\nEXPOSE 70000\n", wantErr: "not a port"},
		{name: "dangling continuation", text: "FROM scratch\nUSER 1:1 \\\n", wantErr: "line continuation"},
		{name: "unterminated quote", text: "FROM scratch\nLABEL a=\"b\n", wantErr: "unterminated quote"},
		{name: "unterminated brace", text: "FROM scratch\nARG V\nLABEL a=${V\n", wantErr: "unterminated ${"},
		{name: "not a keyword", text: "FROM scratch\n{} x\n", wantErr: "not an instruction keyword"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDockerfile(strings.NewReader(tt.text), tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseDockerfile() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseDockerfile() error = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseDockerfile() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// TestRepoDockerfile pins the properties of the real Dockerfile that the
// deployment relies on: the shared build script, a non-root numeric user,
// port 80 (as the report's "docker run -p 8080:80" expects), the serve entrypoint and no HEALTHCHECK (parseDockerfile
// refuses one).
func TestRepoDockerfile(t *testing.T) {
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := parseDockerfile(f, map[string]string{"VERSION": "9.9.9", "COMMIT": "abc"})
	if err != nil {
		t.Fatalf("parsing the repository's Dockerfile: %v", err)
	}
	if !d.BuildScript {
		t.Error("no build-stage RUN calls deploy/build.sh")
	}
	if d.Uid != 65532 || d.Gid != 65532 {
		t.Errorf("USER %q, want 65532:65532 (nonroot in deploy/rootfs/etc/passwd)", d.User)
	}
	if !reflect.DeepEqual(d.ExposedPorts, []string{"80/tcp"}) {
		t.Errorf("EXPOSE %v, want [80/tcp]", d.ExposedPorts)
	}
	if !slices.Contains(d.Env, "PORT=80") {
		t.Errorf("ENV %q, want PORT=80 so the service listens on the EXPOSEd port", d.Env)
	}
	if !reflect.DeepEqual(d.Entrypoint, []string{"/fashion", "serve"}) {
		t.Errorf("ENTRYPOINT %q, want [/fashion serve]", d.Entrypoint)
	}
	if got := d.Labels["org.opencontainers.image.version"]; got != "9.9.9" {
		t.Errorf("version label %q, want the VERSION build argument 9.9.9", got)
	}
	if err := checkEntrypoint(d, rootfsFiles("b", "c", "p", "g")); err != nil {
		t.Error(err)
	}
}

// TestRootfsUser checks that the passwd and group files shipped in the
// image define the Dockerfile's numeric user, so tools that resolve the uid
// (and Go's os/user) see "nonroot" rather than an unknown id.
func TestRootfsUser(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"../rootfs/etc/passwd", "nonroot:x:65532:65532:"},
		{"../rootfs/etc/group", "nonroot:x:65532:"},
	} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "\n"+tc.want) && !strings.HasPrefix(string(b), tc.want) {
			t.Errorf("%s has no line starting %q:\n%s", tc.file, tc.want, b)
		}
	}
}

func FuzzParseDockerfile(f *testing.F) {
	if b, err := os.ReadFile("../../Dockerfile"); err == nil {
		f.Add(string(b))
	}
	f.Add("FROM scratch\nLABEL a=\"$X\" b=${Y}\nENV K V\nEXPOSE 1/udp\n")
	f.Add("FROM a\nRUN x \\\n# c\n y\nFROM scratch\nUSER 1:2\nENTRYPOINT [\"/x\"]\n")
	f.Add("FROM scratch\nARG A=\"q\nLABEL a=${\n")
	f.Fuzz(func(t *testing.T, text string) {
		d, err := parseDockerfile(strings.NewReader(text), map[string]string{"VERSION": "v"})
		if err != nil {
			return
		}
		if d.User != "" && (d.Uid == 0 || d.Gid == 0) {
			t.Errorf("accepted root or unparsed USER %q", d.User)
		}
		for _, p := range d.ExposedPorts {
			if !strings.HasSuffix(p, "/tcp") && !strings.HasSuffix(p, "/udp") {
				t.Errorf("exposed port %q lacks a protocol", p)
			}
		}
	})
}
