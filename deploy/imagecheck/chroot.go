package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
)

// jail runs programs of an extracted image filesystem the way a container
// runtime would: with that directory as their root, as the image's user,
// with the image's environment and nothing inherited from the host.
type jail struct {
	root     string   // extracted root filesystem
	uid, gid uint32   // image USER
	env      []string // image config Env
}

// command prepares argv[0] (a path inside the jail) with argv's arguments.
func (j jail) command(ctx context.Context, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = "/"
	cmd.Env = j.env
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     j.root,
		Credential: &syscall.Credential{Uid: j.uid, Gid: j.gid, Groups: []uint32{}},
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL, // never outlive the check
	}
	return cmd
}

// output runs argv inside the jail and returns its standard output; a
// non-zero exit is an error carrying its standard error.
func (j jail) output(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := j.command(ctx, argv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("running %q in %s as %d:%d: %w; stderr: %s", argv, j.root, j.uid, j.gid, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// tailBuffer keeps the last max bytes written to it, so a long-running
// server's output can be shown when it fails without growing without bound.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

// Write appends p, dropping the oldest bytes beyond max.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String returns the kept output.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// procIdentity reads the real, effective, saved and filesystem uids of pid
// from /proc, so the check can prove the server is not running as root.
func procIdentity(pid int) (uids []string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, fmt.Errorf("reading status of process %d: %w", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			return strings.Fields(rest), nil
		}
	}
	return nil, errors.New("process status has no Uid line")
}
