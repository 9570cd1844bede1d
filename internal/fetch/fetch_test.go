package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// These tests send traffic only to loopback addresses (127.0.0.1–3).
// Refusal of every other kind of address is tested on CheckAddr and the
// dial hook, which never connect.

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// newTestClient is New with a resolver that answers from /etc/hosts only
// and fails any query it would send to a DNS server, so that "localhost"
// resolves and nothing ever leaves the machine.
func newTestClient(p Policy) *Client {
	return newClient(p, &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			return nil, fmt.Errorf("test resolver: refusing to contact DNS server %s", address)
		},
	})
}

func TestCheckAddr(t *testing.T) {
	tests := []struct {
		addr   string
		policy Policy
		want   string // "" for allowed, else the Reason
	}{
		// Public unicast on the standard ports.
		{"93.184.216.34:80", Policy{}, ""},
		{"93.184.216.34:443", Policy{}, ""},
		{"[2606:2800:220:1:248:1893:25c8:1946]:443", Policy{}, ""},
		{"93.184.216.34:8080", Policy{}, ReasonPort},
		{"93.184.216.34:22", Policy{}, ReasonPort},
		// Internal and reserved IPv4.
		{"127.0.0.1:80", Policy{}, ReasonBlockedAddress},
		{"127.1.2.3:443", Policy{}, ReasonBlockedAddress},
		{"10.0.0.1:80", Policy{}, ReasonBlockedAddress},
		{"172.16.0.1:80", Policy{}, ReasonBlockedAddress},
		{"172.31.255.254:80", Policy{}, ReasonBlockedAddress},
		{"192.168.1.1:80", Policy{}, ReasonBlockedAddress},
		{"169.254.169.254:80", Policy{}, ReasonBlockedAddress},
		{"169.254.0.1:80", Policy{}, ReasonBlockedAddress},
		{"100.64.0.1:80", Policy{}, ReasonBlockedAddress},
		{"100.127.255.254:80", Policy{}, ReasonBlockedAddress},
		{"0.0.0.0:80", Policy{}, ReasonBlockedAddress},
		{"255.255.255.255:80", Policy{}, ReasonBlockedAddress},
		{"224.0.0.1:80", Policy{}, ReasonBlockedAddress},
		{"192.0.2.10:80", Policy{}, ReasonBlockedAddress},    // TEST-NET-1
		{"198.51.100.10:80", Policy{}, ReasonBlockedAddress}, // TEST-NET-2
		{"203.0.113.10:80", Policy{}, ReasonBlockedAddress},  // TEST-NET-3
		{"198.18.0.1:80", Policy{}, ReasonBlockedAddress},    // benchmarking
		{"240.0.0.1:80", Policy{}, ReasonBlockedAddress},
		// Internal IPv6 and IPv6 forms of internal IPv4.
		{"[::1]:80", Policy{}, ReasonBlockedAddress},
		{"[::]:80", Policy{}, ReasonBlockedAddress},
		{"[fe80::1]:80", Policy{}, ReasonBlockedAddress},
		{"[fe80::1%25eth0]:80", Policy{}, ReasonBlockedAddress},
		{"[fc00::1]:80", Policy{}, ReasonBlockedAddress},
		{"[fd12:3456::1]:80", Policy{}, ReasonBlockedAddress},
		{"[ff02::1]:80", Policy{}, ReasonBlockedAddress},
		{"[::ffff:127.0.0.1]:80", Policy{}, ReasonBlockedAddress},
		{"[::ffff:169.254.169.254]:80", Policy{}, ReasonBlockedAddress},
		{"[::ffff:10.0.0.1]:80", Policy{}, ReasonBlockedAddress},
		{"[64:ff9b::a9fe:a9fe]:80", Policy{}, ReasonBlockedAddress}, // NAT64 of 169.254.169.254
		{"[64:ff9b::7f00:1]:80", Policy{}, ReasonBlockedAddress},    // NAT64 of 127.0.0.1
		{"[2002:a9fe:a9fe::1]:80", Policy{}, ReasonBlockedAddress},  // 6to4 of 169.254.169.254
		{"[2001:db8::1]:80", Policy{}, ReasonBlockedAddress},        // documentation
		{"[2001::1]:80", Policy{}, ReasonBlockedAddress},            // Teredo
		// IPv4-mapped public addresses are judged as IPv4.
		{"[::ffff:93.184.216.34]:80", Policy{}, ""},
		// An operator's ranges lift the deny list and the port rule.
		{"127.0.0.1:8080", Policy{AllowCIDRs: loopback}, ""},
		{"[::ffff:127.0.0.1]:8080", Policy{AllowCIDRs: loopback}, ""},
		{"10.1.2.3:9000", Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, ""},
		{"10.1.2.3:9000", Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}}, ReasonBlockedAddress},
		{"169.254.169.254:80", Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, ReasonBlockedAddress},
		{"93.184.216.34:8080", Policy{AllowCIDRs: loopback}, ReasonPort},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			ap, err := netip.ParseAddrPort(strings.Replace(tt.addr, "%25", "%", 1))
			if err != nil {
				t.Fatalf("bad test address: %v", err)
			}
			checkReason(t, CheckAddr(tt.policy, ap), tt.want)
		})
	}
}

// checkReason fails t unless err is nil (want == "") or an *Error with
// Reason want.
func checkReason(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("got error %v, want none", err)
		}
		return
	}
	var fe *Error
	if !errors.As(err, &fe) {
		t.Fatalf("got error %v (%T), want *Error with reason %q", err, err, want)
	}
	if fe.Reason != want {
		t.Fatalf("reason = %q, want %q (error: %v)", fe.Reason, want, err)
	}
	if fe.Status < 400 || fe.Status > 599 && fe.Status != StatusClientClosedRequest {
		t.Errorf("status %d is not an error status", fe.Status)
	}
	if fe.Error() == "" || !strings.HasPrefix(fe.Error(), "fetching image: ") {
		t.Errorf("message %q does not explain the failure", fe.Error())
	}
}

func TestDialControl(t *testing.T) {
	c := New(Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	tests := []struct {
		network, address, want string
	}{
		{"tcp4", "93.184.216.34:443", ""},
		{"tcp6", "[2606:2800:220:1:248:1893:25c8:1946]:80", ""},
		{"tcp4", "169.254.169.254:80", ReasonBlockedAddress},
		{"tcp4", "127.0.0.1:80", ReasonBlockedAddress},
		{"tcp4", "127.0.0.2:12345", ""},
		{"tcp6", "[::ffff:169.254.169.254]:80", ReasonBlockedAddress},
		{"tcp6", "[64:ff9b::a9fe:a9fe]:80", ReasonBlockedAddress},
		{"udp4", "93.184.216.34:443", ReasonBlockedAddress},
		{"tcp4", "example.com:80", ReasonBlockedAddress},
		{"tcp4", "93.184.216.34", ReasonBlockedAddress},
	}
	for _, tt := range tests {
		t.Run(tt.network+" "+tt.address, func(t *testing.T) {
			checkReason(t, c.control(tt.network, tt.address, nil), tt.want)
		})
	}
}

func TestHostAllowed(t *testing.T) {
	patterns := []string{"Example.com", "*.cdn.example.org", "images.test."}
	tests := []struct {
		host string
		want bool
	}{
		{"example.com", true},
		{"EXAMPLE.COM", true},
		{"www.example.com", false},
		{"a.cdn.example.org", true},
		{"a.b.cdn.example.org", true},
		{"cdn.example.org", false},
		{"evilcdn.example.org", false},
		{"cdn.example.org.evil.com", false},
		{"images.test", true},
		{"127.0.0.1", false},
	}
	for _, tt := range tests {
		if got := hostAllowed(patterns, tt.host); got != tt.want {
			t.Errorf("hostAllowed(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestPolicyDefaults(t *testing.T) {
	p := Policy{}.withDefaults()
	if p.MaxBytes != DefaultMaxBytes || p.Timeout != DefaultTimeout || p.ConnectTimeout != DefaultConnectTimeout || p.MaxRedirects != 0 {
		t.Errorf("zero Policy with defaults = %+v, want the default caps and no redirects", p)
	}
	if d := DefaultPolicy(); !reflect.DeepEqual(d.withDefaults(), d) || d.MaxRedirects != DefaultMaxRedirects {
		t.Errorf("DefaultPolicy() = %+v, not complete or without redirects", d)
	}
	if got := (Policy{MaxRedirects: -1}).withDefaults().MaxRedirects; got != 0 {
		t.Errorf("MaxRedirects -1 became %d, want 0 (no redirects)", got)
	}
}

// pngBytes is a small valid PNG.
func pngBytes(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 28, 28))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// server is an httptest server on a chosen loopback address that counts the
// TCP connections it accepts, so tests can assert that a refused fetch never
// reached it.
type server struct {
	*httptest.Server
	conns atomic.Int64
}

// newServer starts h on ip (one of 127.0.0.1–3) on a random port.
func newServer(t *testing.T, ip string, h http.Handler) *server {
	t.Helper()
	ln, err := net.Listen("tcp4", ip+":0")
	if err != nil {
		t.Fatalf("listening on %s: %v", ip, err)
	}
	s := &server{Server: httptest.NewUnstartedServer(h)}
	s.Listener.Close()
	s.Listener = ln
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func TestGet(t *testing.T) {
	img := pngBytes(t)
	big := append(bytes.Clone(img), make([]byte, 2<<20)...)

	mux := http.NewServeMux()
	mux.HandleFunc("/img.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(img)
	})
	mux.HandleFunc("/lying.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write(img)
	})
	mux.HandleFunc("/page.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png") // lies the other way
		fmt.Fprint(w, "<!doctype html><title>not an image</title>")
	})
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write(big) // with Content-Length
	})
	mux.HandleFunc("/big-chunked", func(w http.ResponseWriter, r *http.Request) {
		for off := 0; off < len(big); off += 32 << 10 {
			w.Write(big[off:min(off+32<<10, len(big))])
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		w.Write(img)
		chunk := make([]byte, 64<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/hop/", func(w http.ResponseWriter, r *http.Request) {
		// /hop/N redirects N more times, then to the image.
		var n int
		fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/hop/"), "%d", &n)
		if n == 0 {
			http.Redirect(w, r, "/img.png", http.StatusFound)
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusMovedPermanently)
	})
	allowed := newServer(t, "127.0.0.2", mux)
	refused := newServer(t, "127.0.0.3", mux)
	mux.HandleFunc("/to-refused", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, refused.URL+"/img.png", http.StatusFound)
	})
	mux.HandleFunc("/to-unresolvable", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://no-such-host.invalid/img.png", http.StatusFound)
	})
	mux.HandleFunc("/to-metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	mux.HandleFunc("/to-file", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
	})

	onlyAllowed := Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, MaxBytes: 1 << 20, MaxRedirects: DefaultMaxRedirects}
	tests := []struct {
		name   string
		policy Policy
		url    string
		want   string // Reason, or "" for success
		status int
	}{
		{"image", onlyAllowed, allowed.URL + "/img.png", "", 0},
		{"image with a lying content type", onlyAllowed, allowed.URL + "/lying.png", "", 0},
		{"three redirects", onlyAllowed, allowed.URL + "/hop/2", "", 0},
		{"html", onlyAllowed, allowed.URL + "/page.html", ReasonNotImage, 415},
		{"404", onlyAllowed, allowed.URL + "/missing", ReasonHTTPStatus, 502},
		{"over the cap with length", onlyAllowed, allowed.URL + "/big", ReasonTooLarge, 413},
		{"over the cap chunked", onlyAllowed, allowed.URL + "/big-chunked", ReasonTooLarge, 413},
		{"endless body", onlyAllowed, allowed.URL + "/endless", ReasonTooLarge, 413},
		{"four redirects", onlyAllowed, allowed.URL + "/hop/3", ReasonTooManyRedirects, 502},
		{"redirect loop", onlyAllowed, allowed.URL + "/loop", ReasonTooManyRedirects, 502},
		{"no redirects allowed", Policy{AllowCIDRs: onlyAllowed.AllowCIDRs}, allowed.URL + "/hop/0", ReasonTooManyRedirects, 502},
		{"redirect to a refused address", onlyAllowed, allowed.URL + "/to-refused", ReasonBlockedAddress, 403},
		{"redirect to the metadata service", onlyAllowed, allowed.URL + "/to-metadata", ReasonBlockedAddress, 403},
		{"redirect to file://", onlyAllowed, allowed.URL + "/to-file", ReasonScheme, 400},
		{"refused address", onlyAllowed, refused.URL + "/img.png", ReasonBlockedAddress, 403},
		{"loopback under the default policy", Policy{}, allowed.URL + "/img.png", ReasonBlockedAddress, 403},
		{"localhost name resolved and refused at dial", onlyAllowed, strings.Replace(refused.URL, "127.0.0.3", "localhost", 1) + "/img.png", ReasonBlockedAddress, 403},
		{"name on a non-standard port, default policy", Policy{}, strings.Replace(allowed.URL, "127.0.0.2", "localhost", 1) + "/img.png", ReasonPort, 403},
		{"host allow-list refuses", Policy{AllowCIDRs: loopback, AllowHosts: []string{"localhost"}}, refused.URL + "/img.png", ReasonHostNotAllowed, 403},
		{"ftp scheme", onlyAllowed, "ftp://127.0.0.2/img.png", ReasonScheme, 400},
		{"user info", onlyAllowed, "http://user:pw@127.0.0.2/img.png", ReasonBadURL, 400},
		{"no host", onlyAllowed, "http:///img.png", ReasonBadURL, 400},
		{"unparsable", onlyAllowed, "http://[::1/", ReasonBadURL, 400},
		{"name that does not resolve", Policy{}, "http://no-such-host.invalid/img.png", ReasonDNS, 502},
		{"redirect to a name that does not resolve", onlyAllowed, allowed.URL + "/to-unresolvable", ReasonDNS, 502},
		{"metadata literal", Policy{}, "http://169.254.169.254/latest/meta-data/", ReasonBlockedAddress, 403},
		{"mapped metadata literal", Policy{}, "http://[::ffff:169.254.169.254]/", ReasonBlockedAddress, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := refused.conns.Load()
			res, err := newTestClient(tt.policy).Get(context.Background(), tt.url)
			if refused.conns.Load() != before {
				t.Errorf("the refused server saw %d new connections", refused.conns.Load()-before)
			}
			checkReason(t, err, tt.want)
			if tt.want != "" {
				var fe *Error
				errors.As(err, &fe)
				if fe.Status != tt.status {
					t.Errorf("status = %d, want %d", fe.Status, tt.status)
				}
				if tt.want == ReasonDNS && !strings.Contains(err.Error(), `"no-such-host.invalid"`) {
					t.Errorf("error %q does not name the host that failed to resolve", err)
				}
				if res != nil {
					t.Error("Get returned a result along with an error")
				}
				return
			}
			if !bytes.Equal(res.Body, img) {
				t.Errorf("body is %d bytes, want the %d-byte PNG", len(res.Body), len(img))
			}
			if res.ContentType != "image/png" {
				t.Errorf("ContentType = %q, want image/png", res.ContentType)
			}
			if !strings.HasSuffix(res.FinalURL, ".png") || !strings.HasPrefix(res.FinalURL, allowed.URL) {
				t.Errorf("FinalURL = %q, want the image's URL", res.FinalURL)
			}
		})
	}
}

// TestGetWithReadFunc checks that a ReadFunc reads the body and that its own
// refusal comes back unwrapped, not as a network failure.
func TestGetWithReadFunc(t *testing.T) {
	img := pngBytes(t)
	s := newServer(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(img) }))
	c := newTestClient(Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	var limits []int64
	res, err := c.GetWith(context.Background(), s.URL+"/x.png", func(r io.Reader, limit int64) ([]byte, error) {
		limits = append(limits, limit)
		return io.ReadAll(r)
	})
	if err != nil || !bytes.Equal(res.Body, img) {
		t.Fatalf("GetWith = %v, %v; want the image", res, err)
	}
	if len(limits) != 1 || limits[0] != DefaultMaxBytes {
		t.Errorf("ReadFunc called with limits %v, want [%d]", limits, DefaultMaxBytes)
	}
	refusal := errors.New("budget exhausted")
	_, err = c.GetWith(context.Background(), s.URL+"/x.png", func(io.Reader, int64) ([]byte, error) { return nil, refusal })
	if err != refusal {
		t.Errorf("GetWith with a refusing ReadFunc = %v, want the refusal itself", err)
	}
}

func TestGetDefaultPolicyNeverConnects(t *testing.T) {
	var requests atomic.Int64
	s := newServer(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
	}))
	byName := strings.Replace(s.URL, "127.0.0.1", "localhost", 1) + "/img.png"
	// With an allowed range elsewhere, a name on a non-standard port passes
	// the URL checks and is refused by the dial hook on its address.
	other := Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}
	tests := []struct {
		policy Policy
		url    string
		want   string
	}{
		{Policy{}, s.URL + "/img.png", ReasonBlockedAddress},
		{Policy{}, byName, ReasonPort},
		{Policy{}, strings.Replace(s.URL, "127.0.0.1", "[::ffff:127.0.0.1]", 1) + "/img.png", ReasonBlockedAddress},
		{other, byName, ReasonBlockedAddress},
		{other, s.URL + "/img.png", ReasonBlockedAddress},
	}
	for _, tt := range tests {
		_, err := newTestClient(tt.policy).Get(context.Background(), tt.url)
		t.Logf("%s: %v", tt.url, err)
		checkReason(t, err, tt.want)
	}
	if n, m := requests.Load(), s.conns.Load(); n != 0 || m != 0 {
		t.Errorf("server saw %d requests on %d connections, want none", n, m)
	}
}

func TestGetAllowHostsAdmits(t *testing.T) {
	img := pngBytes(t)
	s := newServer(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(img)
	}))
	c := newTestClient(Policy{AllowCIDRs: loopback, AllowHosts: []string{"LOCALHOST"}})
	res, err := c.Get(context.Background(), strings.Replace(s.URL, "127.0.0.1", "localhost", 1)+"/x")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !bytes.Equal(res.Body, img) {
		t.Error("wrong body")
	}
}

func TestGetSlowTargets(t *testing.T) {
	img := pngBytes(t)
	// done releases handlers still blocked when the test ends.
	done := make(chan struct{})
	trickle := newServer(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(img)))
		w.WriteHeader(http.StatusOK)
		for _, b := range img {
			w.Write([]byte{b})
			w.(http.Flusher).Flush()
			select {
			case <-time.After(time.Second):
			case <-r.Context().Done():
				return
			case <-done:
				return
			}
		}
	}))
	slowHeaders := newServer(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	// A listener that accepts connections and never answers at all.
	silent, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, conn)
		}
	}()
	t.Cleanup(func() {
		close(done)
		silent.Close()
		<-acceptDone
		for _, c := range held {
			c.Close()
		}
	})

	const timeout = 400 * time.Millisecond
	c := newTestClient(Policy{AllowCIDRs: loopback, Timeout: timeout, ConnectTimeout: timeout})
	for name, u := range map[string]string{
		"trickle":      trickle.URL + "/img.png",
		"slow headers": slowHeaders.URL + "/img.png",
		"silent":       "http://" + silent.Addr().String() + "/img.png",
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := c.Get(context.Background(), u)
			elapsed := time.Since(start)
			checkReason(t, err, ReasonTimeout)
			// Generous upper bound: the machine may be busy.
			if elapsed > timeout+2*time.Second {
				t.Errorf("Get took %v, want about %v", elapsed, timeout)
			}
		})
	}

	t.Run("caller cancels", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := newTestClient(Policy{AllowCIDRs: loopback}).Get(ctx, slowHeaders.URL)
		checkReason(t, err, ReasonCanceled)
	})
	t.Run("caller deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := newTestClient(Policy{AllowCIDRs: loopback}).Get(ctx, slowHeaders.URL)
		checkReason(t, err, ReasonTimeout)
	})
}

func TestGetConnectRefused(t *testing.T) {
	// A port on 127.0.0.2 that nothing listens on: find one by closing a
	// listener.
	ln, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = newTestClient(Policy{AllowCIDRs: loopback}).Get(context.Background(), "http://"+addr+"/")
	checkReason(t, err, ReasonConnect)
}
