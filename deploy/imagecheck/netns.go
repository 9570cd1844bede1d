package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// unprivilegedPortStart is the sysctl that Docker (20.10 and later) and
// containerd set to 0 in every container's network namespace, which lets
// the image's non-root user bind port 80.
const unprivilegedPortStart = "/proc/sys/net/ipv4/ip_unprivileged_port_start"

// netns is a fresh network namespace configured as a container runtime
// configures a container's: only loopback, up, and any port bindable by
// any user. Everything that must happen inside it (starting the server,
// dialling it) runs on one OS thread that joined it and never leaves.
type netns struct {
	do   chan func()
	quit chan struct{}
}

// newNetns creates the namespace. Close it only after every process started
// in it has exited: a child started with Pdeathsig is killed when the
// thread that started it ends.
func newNetns() (*netns, error) {
	n := &netns{do: make(chan func()), quit: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		// The thread is never unlocked: when this goroutine returns the
		// runtime ends the thread instead of reusing it in the wrong
		// namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("creating a network namespace: %w", err)
			return
		}
		if err := setupContainerNet(); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for {
			select {
			case f := <-n.do:
				f()
			case <-n.quit:
				return
			}
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return n, nil
}

// setupContainerNet brings loopback up and sets the unprivileged port start
// to 0 in the calling thread's network namespace.
func setupContainerNet() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network namespace: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("network namespace: reading loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("network namespace: bringing loopback up: %w", err)
	}
	if err := os.WriteFile(unprivilegedPortStart, []byte("0\n"), 0); err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	b, err := os.ReadFile(unprivilegedPortStart)
	if err != nil || strings.TrimSpace(string(b)) != "0" {
		return fmt.Errorf("network namespace: %s is %q (error %v), want 0", unprivilegedPortStart, b, err)
	}
	return nil
}

// run calls f on the namespace's thread and waits for it.
func (n *netns) run(f func()) {
	done := make(chan struct{})
	n.do <- func() {
		defer close(done)
		f()
	}
	<-done
}

// dial connects to addr from inside the namespace.
func (n *netns) dial(ctx context.Context, addr string) (net.Conn, error) {
	var c net.Conn
	var err error
	n.run(func() {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", addr)
	})
	return c, err
}

// Close ends the namespace's thread; the kernel frees the namespace when
// nothing uses it any more.
func (n *netns) Close() { close(n.quit) }

// publish forwards connections accepted on the host listener l to port
// target inside n, as "docker run -p HOST:TARGET" does. It returns when l
// is closed, after the connections it forwarded have ended.
func publish(ctx context.Context, l net.Listener, n *netns, target string) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			up, err := n.dial(ctx, target)
			if err != nil {
				return // the client sees the connection closed, as with docker-proxy
			}
			defer up.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(up, c)
				up.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			io.Copy(c, up)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// listenHost listens on 127.0.0.1:want, or on a free loopback port when
// want is taken (the check must not fail because something else on the
// machine uses 8080).
func listenHost(want int) (net.Listener, error) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", want))
	if err == nil {
		return l, nil
	}
	if !errors.Is(err, unix.EADDRINUSE) {
		return nil, fmt.Errorf("listening on the host: %w", err)
	}
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening on the host: %w", err)
	}
	return l, nil
}
