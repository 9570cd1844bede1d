package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// BuildFashion builds ./cmd/fashion (the working directory must be inside
// the module) into dir at low CPU priority and returns the binary's path.
func BuildFashion(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "fashion")
	cmd := exec.CommandContext(ctx, "nice", "-n", "19", "go", "build", "-o", bin, "github.com/fashion-classifier/fashion/cmd/fashion")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building fashion: %w\n%s", err, out)
	}
	return bin, nil
}

// Machine describes this machine in one line: CPU model, core count, Go
// version and kernel.
func Machine() string {
	cpu := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d cores, %s%s", cpu, runtime.NumCPU(), runtime.Version(), kernel)
}

// Busy describes how busy the machine is right now: the load averages and
// the three processes using the most CPU, so a report can say what else
// was running while it measured.
func Busy() string {
	load := "load average unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			load = "load average " + strings.Join(f[:3], " ")
		}
	}
	out, err := exec.Command("ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers").Output()
	if err != nil {
		return load
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var top []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 2 && f[1] != "ps" && len(top) < 3 {
			top = append(top, f[1]+" "+f[0]+"%")
		}
	}
	return load + "; busiest processes: " + strings.Join(top, ", ")
}
