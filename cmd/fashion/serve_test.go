package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServeHonoursPORTAndStops starts the real command with PORT set,
// waits for it to answer /readyz, then cancels it like SIGTERM would.
func TestServeHonoursPORTAndStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	t.Setenv("PORT", itoa(port))

	ctx, cancel := context.WithCancel(context.Background())
	out, w := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-log-level", "error", "-grpc-addr", "127.0.0.1:0"}, w, io.Discard)
		w.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("no startup line: %v", err)
	}
	if !strings.Contains(line, itoa(port)) {
		t.Errorf("startup line %q does not mention PORT %d", line, port)
	}
	go io.Copy(io.Discard, out)
	resp, err := http.Get("http://127.0.0.1:" + itoa(port) + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %s", resp.Status)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d after cancellation, want 0", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop after cancellation")
	}
}

func TestServeRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "-max-batch", "0"},
		{"serve", "-request-timeout", "0s"},
		{"serve", "-max-conns", "-1"},
		{"serve", "-body-budget", "1000"}, // less than two max-size bodies
		{"serve", "-allow-fetch-cidr", "not-a-range"},
		{"serve", "-log-format", "xml"},
		{"serve", "extra"},
	} {
		if code := run(context.Background(), args, io.Discard, io.Discard); code == 0 {
			t.Errorf("%q: exit 0, want an error", args)
		}
	}
}

// TestServePortInUse checks that a taken port is reported with a hint on
// how to choose another.
func TestServePortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stderr strings.Builder
	code := run(context.Background(), []string{"serve", "-log-level", "error", "-grpc-addr", "", "-addr", ln.Addr().String()}, io.Discard, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "address already in use") || !strings.Contains(stderr.String(), "-addr") || !strings.Contains(stderr.String(), "PORT") {
		t.Errorf("serve on a taken port: exit %d, stderr %q; want an error with a hint about -addr and PORT", code, stderr.String())
	}
}
