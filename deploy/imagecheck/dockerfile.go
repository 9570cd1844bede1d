package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// dockerImage is what the final stage of the Dockerfile says about the image
// configuration. The check builds its image config from it, so the image it
// tests cannot drift from the Dockerfile's.
type dockerImage struct {
	User         string            // USER, e.g. "65532:65532"
	Uid, Gid     uint32            // USER, parsed; both must be numeric
	ExposedPorts []string          // EXPOSE, normalised to "8080/tcp"
	Env          []string          // ENV, as "KEY=value" in order
	Labels       map[string]string // LABEL, with ARG values substituted
	Entrypoint   []string          // ENTRYPOINT, exec form only
	Cmd          []string          // CMD, exec form only
	WorkingDir   string            // WORKDIR
	BuildScript  bool              // some RUN before the final stage calls deploy/build.sh
}

// instruction is one logical Dockerfile line: continuation lines joined and
// comments removed.
type instruction struct {
	line int    // line number where the instruction starts
	op   string // upper-cased keyword, e.g. "FROM"
	args string // everything after the keyword, trimmed
}

// maxDockerfileSize bounds how much of a Dockerfile is read; real ones are a
// few kilobytes.
const maxDockerfileSize = 1 << 20

// parseDockerfile reads a Dockerfile and returns the configuration of its
// final stage, with build arguments taken from args (falling back to ARG
// defaults). It understands the instructions a scratch final stage can use
// and rejects anything else, including HEALTHCHECK, so a change to the
// Dockerfile that this check cannot mirror fails loudly instead of being
// ignored.
func parseDockerfile(r io.Reader, args map[string]string) (*dockerImage, error) {
	insts, err := splitInstructions(io.LimitReader(r, maxDockerfileSize))
	if err != nil {
		return nil, err
	}
	final := -1
	for i, in := range insts {
		if in.op == "FROM" {
			final = i
		}
	}
	if final < 0 {
		return nil, fmt.Errorf("Dockerfile has no FROM instruction")
	}
	img := &dockerImage{Labels: map[string]string{}}
	for _, in := range insts[:final] {
		if in.op == "RUN" && strings.Contains(in.args, "deploy/build.sh") {
			img.BuildScript = true
		}
	}

	vars := map[string]string{} // ARG and ENV values visible in the final stage
	for _, in := range insts[final+1:] {
		switch in.op {
		case "ARG":
			name, def, _ := strings.Cut(in.args, "=")
			name = strings.TrimSpace(name)
			if !validName(name) {
				return nil, fmt.Errorf("Dockerfile line %d: ARG name %q is not valid", in.line, name)
			}
			if v, ok := args[name]; ok {
				vars[name] = v
			} else {
				v, err := unquote(strings.TrimSpace(def))
				if err != nil {
					return nil, fmt.Errorf("Dockerfile line %d: ARG %s: %w", in.line, name, err)
				}
				vars[name] = v
			}
		case "LABEL", "ENV":
			kvs, err := keyValues(in.args, vars)
			if err != nil {
				return nil, fmt.Errorf("Dockerfile line %d: %s: %w", in.line, in.op, err)
			}
			for _, kv := range kvs {
				if in.op == "LABEL" {
					img.Labels[kv[0]] = kv[1]
					continue
				}
				vars[kv[0]] = kv[1]
				img.Env = setEnv(img.Env, kv[0], kv[1])
			}
		case "USER":
			u, g, ok := strings.Cut(in.args, ":")
			uid, uerr := strconv.ParseUint(u, 10, 32)
			gid, gerr := strconv.ParseUint(g, 10, 32)
			if !ok || uerr != nil || gerr != nil {
				return nil, fmt.Errorf("Dockerfile line %d: USER %q must be numeric uid:gid so runAsNonRoot can verify it", in.line, in.args)
			}
			if uid == 0 || gid == 0 {
				return nil, fmt.Errorf("Dockerfile line %d: USER %q is root; the image must run as a non-root user", in.line, in.args)
			}
			img.User, img.Uid, img.Gid = in.args, uint32(uid), uint32(gid)
		case "EXPOSE":
			for p := range strings.FieldsSeq(in.args) {
				num, proto, ok := strings.Cut(p, "/")
				if !ok {
					proto = "tcp"
				}
				if n, err := strconv.ParseUint(num, 10, 16); err != nil || n == 0 || (proto != "tcp" && proto != "udp") {
					return nil, fmt.Errorf("Dockerfile line %d: EXPOSE %q is not a port like 8080 or 8080/tcp", in.line, p)
				}
				img.ExposedPorts = append(img.ExposedPorts, num+"/"+proto)
			}
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(in.args), &argv); err != nil || len(argv) == 0 {
				return nil, fmt.Errorf("Dockerfile line %d: %s must use the exec (JSON array) form: scratch has no shell", in.line, in.op)
			}
			if in.op == "ENTRYPOINT" {
				img.Entrypoint = argv
			} else {
				img.Cmd = argv
			}
		case "WORKDIR":
			img.WorkingDir = in.args
		case "COPY":
			// The files are mirrored by the check's layer; see rootfsFiles.
		default:
			return nil, fmt.Errorf("Dockerfile line %d: %s in the final stage is not mirrored by deploy/imagecheck; update the check with the Dockerfile", in.line, in.op)
		}
	}
	return img, nil
}

// splitInstructions turns Dockerfile text into instructions, joining lines
// that end in a backslash and dropping comment and blank lines.
func splitInstructions(r io.Reader) ([]instruction, error) {
	var (
		insts []instruction
		cur   strings.Builder
		start int
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), maxDockerfileSize)
	n := 0
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		op, args, _ := strings.Cut(text, " ")
		op = strings.ToUpper(strings.TrimSpace(op))
		for _, c := range op {
			if c < 'A' || c > 'Z' {
				return fmt.Errorf("Dockerfile line %d: %q is not an instruction keyword", start, op)
			}
		}
		insts = append(insts, instruction{line: start, op: op, args: strings.TrimSpace(args)})
		return nil
	}
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue // comments may sit between continuation lines
		}
		if cur.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(body)
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(line)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("Dockerfile line %d: instruction ends with a line continuation", start)
	}
	return insts, nil
}

// keyValues parses LABEL/ENV arguments of the form k=v k2="v 2", expanding
// $NAME and ${NAME} from vars. The legacy "ENV key value" form is accepted
// for a single pair.
func keyValues(s string, vars map[string]string) ([][2]string, error) {
	words, err := splitWords(s)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("no key=value pairs")
	}
	if !strings.Contains(words[0], "=") {
		if len(words) < 2 || !validName(words[0]) {
			return nil, fmt.Errorf("%q is not key=value", s)
		}
		v, err := expand(strings.Join(words[1:], " "), vars)
		return [][2]string{{words[0], v}}, err
	}
	var out [][2]string
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", w)
		}
		v, err := expand(v, vars)
		if err != nil {
			return nil, err
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// splitWords splits s at unquoted white space, removing double quotes and
// backslash escapes inside them. Variable references are left for expand,
// marked by keeping their '$'.
func splitWords(s string) ([]string, error) {
	var (
		words  []string
		cur    strings.Builder
		inWord bool
		quoted bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			quoted = !quoted
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case (c == ' ' || c == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// unquote removes one pair of surrounding double quotes from an ARG default.
func unquote(s string) (string, error) {
	words, err := splitWords(s)
	if err != nil {
		return "", err
	}
	return strings.Join(words, " "), nil
}

// expand replaces $NAME and ${NAME} in s with their values from vars; an
// unknown name expands to "" as in Docker.
func expand(s string, vars map[string]string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		var name string
		if s[i+1] == '{' {
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated ${ in %q", s)
			}
			name = s[i+2 : i+2+end]
			i += 2 + end
		} else {
			j := i + 1
			for j < len(s) && isNameByte(s[j], j == i+1) {
				j++
			}
			name = s[i+1 : j]
			i = j - 1
		}
		if !validName(name) {
			return "", fmt.Errorf("variable reference %q in %q is not a plain name", name, s)
		}
		b.WriteString(vars[name])
	}
	return b.String(), nil
}

// validName reports whether s is a variable name: a letter or underscore,
// then letters, digits or underscores.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i], i == 0) {
			return false
		}
	}
	return true
}

func isNameByte(c byte, first bool) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
}

// setEnv sets key=value in env, replacing an earlier value for key.
func setEnv(env []string, key, value string) []string {
	for i, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			env[i] = key + "=" + value
			return env
		}
	}
	return append(env, key+"="+value)
}
