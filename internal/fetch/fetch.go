// Package fetch downloads images from user-supplied URLs without letting
// those users reach what the server can reach and they cannot (server-side
// request forgery, SSRF): the cloud metadata service at 169.254.169.254,
// loopback services, the private network.
//
// Every connection is judged on the IP address actually dialled, in a
// net.Dialer Control hook that runs after DNS resolution and before the
// TCP handshake. A host name that resolves (or re-resolves, in a DNS
// rebinding attack) to a refused address, and a redirect to one, therefore
// fail without a single packet reaching the target. The deny list is
// code.dny.dev/ssrf's, kept in sync with the IANA special-purpose
// registries: loopback, RFC 1918 private, link-local, CGNAT, multicast,
// unspecified, broadcast, documentation and benchmarking ranges, and for
// IPv6 everything outside global unicast (::1, fe80::/10, fc00::/7, the
// NAT64 prefix 64:ff9b::/96) plus 6to4 and Teredo. IPv4-mapped IPv6
// addresses are judged as the IPv4 address they carry.
//
// A Policy adds what an operator allows on top: ranges (AllowCIDRs, any
// port) and a host name allow-list (AllowHosts). Responses are capped in
// size while reading, and the body must be an image by its magic bytes.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"code.dny.dev/ssrf"

	"github.com/fashion-classifier/fashion/internal/imageprep"
)

// Defaults used for the zero fields of a Policy.
const (
	DefaultMaxBytes       = 10 << 20
	DefaultTimeout        = 10 * time.Second
	DefaultConnectTimeout = 3 * time.Second
	DefaultMaxRedirects   = 3
)

// Policy says what a Client may fetch. The zero Policy is the strictest:
// public unicast addresses on ports 80 and 443 only, no redirects, with the
// default caps; DefaultPolicy is the zero Policy plus DefaultMaxRedirects.
type Policy struct {
	// AllowCIDRs are ranges an operator allows in addition to public
	// unicast addresses, on any port: 127.0.0.0/8 for tests, 10.0.0.0/8
	// for images inside a VPC. They take precedence over the deny list.
	AllowCIDRs []netip.Prefix
	// AllowHosts, if non-empty, are the only host names that may be
	// fetched, compared case-insensitively; "*.example.com" matches any
	// subdomain of example.com but not example.com itself. It applies to
	// the first URL and to every redirect target; address checks still
	// apply to whatever the names resolve to.
	AllowHosts []string
	// MaxBytes caps the response body (DefaultMaxBytes if zero).
	MaxBytes int64
	// Timeout bounds the whole fetch, redirects and body included
	// (DefaultTimeout if zero).
	Timeout time.Duration
	// ConnectTimeout bounds each TCP connect and TLS handshake
	// (DefaultConnectTimeout if zero).
	ConnectTimeout time.Duration
	// MaxRedirects is how many redirects are followed; zero (or negative)
	// means none.
	MaxRedirects int
}

// DefaultPolicy is the policy a server starts from: public addresses only,
// the default caps and timeouts, and up to DefaultMaxRedirects redirects.
func DefaultPolicy() Policy {
	return Policy{
		MaxBytes:       DefaultMaxBytes,
		Timeout:        DefaultTimeout,
		ConnectTimeout: DefaultConnectTimeout,
		MaxRedirects:   DefaultMaxRedirects,
	}
}

// withDefaults returns p with its zero caps and timeouts set to the
// defaults (zero MaxRedirects stays zero: no redirects).
func (p Policy) withDefaults() Policy {
	if p.MaxBytes <= 0 {
		p.MaxBytes = DefaultMaxBytes
	}
	if p.Timeout <= 0 {
		p.Timeout = DefaultTimeout
	}
	if p.ConnectTimeout <= 0 {
		p.ConnectTimeout = DefaultConnectTimeout
	}
	p.MaxRedirects = max(p.MaxRedirects, 0)
	return p
}

// Reasons are the values of Error.Reason: short, stable labels meant for
// metrics and logs.
const (
	ReasonBadURL           = "bad_url"
	ReasonScheme           = "scheme"
	ReasonPort             = "port"
	ReasonBlockedAddress   = "blocked_address"
	ReasonHostNotAllowed   = "host_not_allowed"
	ReasonDNS              = "dns"
	ReasonConnect          = "connect"
	ReasonTimeout          = "timeout"
	ReasonCanceled         = "canceled"
	ReasonTooLarge         = "too_large"
	ReasonTooManyRedirects = "too_many_redirects"
	ReasonHTTPStatus       = "http_status"
	ReasonUpstream         = "upstream"
	ReasonNotImage         = "not_image"
)

// StatusClientClosedRequest is the status used for a fetch abandoned because
// the caller's context was cancelled (nginx's 499); nobody is left to read
// it, but it keeps logs and metrics honest.
const StatusClientClosedRequest = 499

// Error is a failed or refused fetch.
type Error struct {
	// Reason is a short label from the Reason constants.
	Reason string
	// Status is the HTTP status a server relaying this fetch should answer:
	// 400 for a malformed or unsupported URL, 403 for a refused destination,
	// 413 for a response over the byte cap, 415 for a body that is not an
	// image, 502 for a target that fails or misbehaves, 504 for a timeout.
	Status int
	// Err says what happened, in words meant for the user who gave the URL.
	Err error
}

// Error returns a message for the user who supplied the URL.
func (e *Error) Error() string {
	return "fetching image: " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// newError builds an Error with a formatted message.
func newError(reason string, status int, format string, args ...any) *Error {
	return &Error{Reason: reason, Status: status, Err: fmt.Errorf(format, args...)}
}

// Result is a fetched image.
type Result struct {
	// Body is the complete response body, at most Policy.MaxBytes long.
	Body []byte
	// ContentType is the MIME type of Body according to its magic bytes
	// (imageprep.Sniff); the server's header is not trusted.
	ContentType string
	// DeclaredContentType is the Content-Type header the server sent.
	DeclaredContentType string
	// FinalURL is the URL the body came from, after redirects.
	FinalURL string
}

// denyList is code.dny.dev/ssrf's address deny list. Ports and networks are
// judged by CheckAddr and the dial hook themselves, so that an operator's
// AllowCIDRs can lift the port restriction. A Guardian is immutable once
// built.
var denyList = ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork())

// CheckAddr judges one address that is about to be dialled under policy p.
// An address inside p.AllowCIDRs is allowed on any port. Any other address
// must not be on the deny list (see the package documentation) and must use
// port 80 or 443. IPv4-mapped IPv6 addresses are judged as IPv4. It returns
// nil or an *Error with Reason ReasonBlockedAddress or ReasonPort.
func CheckAddr(p Policy, addr netip.AddrPort) error {
	ip := addr.Addr().WithZone("").Unmap()
	if !ip.IsValid() {
		return newError(ReasonBlockedAddress, http.StatusForbidden, "refused to connect to an invalid address")
	}
	for _, prefix := range p.AllowCIDRs {
		if prefix.Contains(ip) {
			return nil
		}
	}
	if err := denyList.SafeAddr(ip); err != nil {
		return &Error{
			Reason: ReasonBlockedAddress,
			Status: http.StatusForbidden,
			Err:    fmt.Errorf("refused to connect to %s: it is %s, and this server does not fetch from internal or reserved networks", ip, describe(ip)),
		}
	}
	if port := addr.Port(); port != 80 && port != 443 {
		return newError(ReasonPort, http.StatusForbidden, "refused to connect to port %d of %s: only ports 80 and 443 are allowed", port, ip)
	}
	return nil
}

// cgnat is the shared address space of carrier-grade NAT (RFC 6598).
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// describe names the kind of a refused address for error messages.
func describe(ip netip.Addr) string {
	switch {
	case ip == netip.AddrFrom4([4]byte{169, 254, 169, 254}):
		return "the cloud instance metadata address"
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsPrivate():
		return "a private-network address"
	case ip.IsLinkLocalUnicast():
		return "a link-local address"
	case cgnat.Contains(ip):
		return "a carrier-grade NAT address"
	case ip.IsMulticast():
		return "a multicast address"
	case ip.IsUnspecified():
		return "the unspecified address"
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address"
	}
	return "in a reserved or special-purpose range"
}

// Client fetches images under a Policy. It is safe for concurrent use and
// keeps idle connections for reuse, so one Client should be shared.
type Client struct {
	policy Policy
	http   *http.Client
}

// New returns a Client enforcing p; zero fields of p take the defaults.
// The client ignores proxy settings in the environment: a proxy would dial
// the target itself, out of reach of the address checks.
func New(p Policy) *Client {
	return newClient(p, nil)
}

// newClient is New with a choice of resolver (nil for the system's), so
// tests can make sure no name lookup ever leaves the machine.
func newClient(p Policy, resolver *net.Resolver) *Client {
	p = p.withDefaults()
	c := &Client{policy: p}
	dialer := &net.Dialer{
		Timeout:  p.ConnectTimeout,
		Control:  c.control,
		Resolver: resolver,
	}
	transport := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    p.ConnectTimeout,
		ResponseHeaderTimeout:  p.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
		// Images do not compress; asking for gzip would only let a
		// small compressed body expand behind the byte cap's back.
		DisableCompression: true,
		MaxIdleConns:       32,
		// A server under load fetches many images from few hosts; the
		// default of 2 idle connections per host would make most fetches
		// dial anew.
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     30 * time.Second,
	}
	c.http = &http.Client{
		Transport:     transport,
		CheckRedirect: c.checkRedirect,
	}
	return c
}

// CloseIdleConnections closes connections kept for reuse.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// control is the net.Dialer Control hook: it runs after name resolution
// with the numeric address about to be connected to, before the connect
// system call, so a refusal sends nothing to the target.
func (c *Client) control(network, address string, _ syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return newError(ReasonBlockedAddress, http.StatusForbidden, "refused to dial over %q: only TCP is allowed", network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return newError(ReasonBlockedAddress, http.StatusForbidden, "refused to dial %q: not a numeric address and port", address)
	}
	return CheckAddr(c.policy, ap)
}

// checkURL judges a URL before any connection is made: scheme, user info,
// host allow-list, and, when the host is an IP literal, the address itself.
func (c *Client) checkURL(u *url.URL) error {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return newError(ReasonScheme, http.StatusBadRequest, "URL scheme %q is not allowed: use http or https", u.Scheme)
	}
	if u.User != nil {
		return newError(ReasonBadURL, http.StatusBadRequest, "URLs with a user name or password (%s@) are not fetched", u.User.Username())
	}
	host := strings.TrimSuffix(u.Hostname(), ".")
	if host == "" {
		return newError(ReasonBadURL, http.StatusBadRequest, "URL %q has no host", u.Redacted())
	}
	if len(c.policy.AllowHosts) > 0 && !hostAllowed(c.policy.AllowHosts, host) {
		return newError(ReasonHostNotAllowed, http.StatusForbidden, "host %q is not on this server's list of allowed hosts", host)
	}
	port := 80
	if scheme == "https" {
		port = 443
	}
	if s := u.Port(); s != "" {
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return newError(ReasonBadURL, http.StatusBadRequest, "URL port %q is not a number from 0 to 65535", s)
		}
		port = int(n)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return CheckAddr(c.policy, netip.AddrPortFrom(ip, uint16(port)))
	}
	// A name on another port can only be fetched if it resolves into an
	// allowed range; without any, refuse now rather than after a lookup.
	if port != 80 && port != 443 && len(c.policy.AllowCIDRs) == 0 {
		return newError(ReasonPort, http.StatusForbidden, "refused to connect to port %d of %s: only ports 80 and 443 are allowed", port, host)
	}
	return nil
}

// hostAllowed reports whether host matches one of the patterns.
func hostAllowed(patterns []string, host string) bool {
	for _, p := range patterns {
		p = strings.TrimSuffix(p, ".")
		if suffix, ok := strings.CutPrefix(p, "*."); ok {
			if len(host) > len(suffix)+1 && strings.EqualFold(host[len(host)-len(suffix):], suffix) && host[len(host)-len(suffix)-1] == '.' {
				return true
			}
			continue
		}
		if strings.EqualFold(p, host) {
			return true
		}
	}
	return false
}

// checkRedirect is the http.Client CheckRedirect hook: it caps the number
// of redirects and re-judges each target URL (the dial hook re-judges the
// address).
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > c.policy.MaxRedirects {
		return newError(ReasonTooManyRedirects, http.StatusBadGateway, "gave up after %d redirects (the limit is %d)", len(via)-1, c.policy.MaxRedirects)
	}
	if err := c.checkURL(req.URL); err != nil {
		var fe *Error
		if errors.As(err, &fe) {
			return &Error{Reason: fe.Reason, Status: fe.Status, Err: fmt.Errorf("redirect to %s refused: %w", req.URL.Redacted(), fe.Err)}
		}
		return err
	}
	return nil
}

// ReadFunc reads a response body: all of r, or, if r holds more than limit
// bytes, at least limit+1 of them so the caller can tell. It lets a server
// charge the bytes to a memory budget as they arrive; an error it returns
// (other than a read error from r) is passed to the caller of GetWith as is.
type ReadFunc func(r io.Reader, limit int64) ([]byte, error)

// readAll is the default ReadFunc.
func readAll(r io.Reader, limit int64) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, limit+1))
}

// Get fetches rawURL under the client's policy and returns the body if it
// is an image. Every failure is an *Error saying why; a refused URL or
// address is refused before anything is sent to it.
func (c *Client) Get(ctx context.Context, rawURL string) (*Result, error) {
	return c.GetWith(ctx, rawURL, nil)
}

// GetWith is Get with the body read by read (nil: read into memory
// directly). Errors that read returns itself, not from the network, come
// back unwrapped.
func (c *Client) GetWith(ctx context.Context, rawURL string, read ReadFunc) (*Result, error) {
	if read == nil {
		read = readAll
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, newError(ReasonBadURL, http.StatusBadRequest, "%q is not a valid URL", rawURL)
	}
	if err := c.checkURL(u); err != nil {
		return nil, err
	}

	fetchCtx, cancel := context.WithTimeout(ctx, c.policy.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(fetchCtx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, newError(ReasonBadURL, http.StatusBadRequest, "%q is not a valid URL: %v", rawURL, err)
	}
	req.Header.Set("Accept", "image/png, image/jpeg, image/gif, image/webp, image/bmp;q=0.9, */*;q=0.1")
	req.Header.Set("User-Agent", "fashion-classifier/1 (image fetch)")

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.classify(ctx, fetchCtx, u, err)
	}
	defer resp.Body.Close()
	final := resp.Request.URL

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, newError(ReasonHTTPStatus, http.StatusBadGateway, "%s answered %s", final.Redacted(), resp.Status)
	}
	if resp.ContentLength > c.policy.MaxBytes {
		return nil, newError(ReasonTooLarge, http.StatusRequestEntityTooLarge, "%s is %d bytes, more than the limit of %d", final.Redacted(), resp.ContentLength, c.policy.MaxBytes)
	}
	src := &netReader{r: resp.Body}
	body, err := read(src, c.policy.MaxBytes)
	if err != nil {
		if src.err == nil || !errors.Is(err, src.err) {
			return nil, err // the ReadFunc's own refusal
		}
		return nil, c.classify(ctx, fetchCtx, final, err)
	}
	if int64(len(body)) > c.policy.MaxBytes {
		return nil, newError(ReasonTooLarge, http.StatusRequestEntityTooLarge, "%s is more than the limit of %d bytes", final.Redacted(), c.policy.MaxBytes)
	}
	format, err := imageprep.Sniff(body)
	if err != nil {
		return nil, &Error{Reason: ReasonNotImage, Status: http.StatusUnsupportedMediaType, Err: fmt.Errorf("%s is not an image (Content-Type %q): %w", final.Redacted(), resp.Header.Get("Content-Type"), err)}
	}
	return &Result{
		Body:                body,
		ContentType:         imageprep.ContentType(format),
		DeclaredContentType: resp.Header.Get("Content-Type"),
		FinalURL:            final.String(),
	}, nil
}

// netReader remembers the error its reader returned, so GetWith can tell a
// network failure from a ReadFunc's own refusal.
type netReader struct {
	r   io.Reader
	err error
}

func (n *netReader) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	if err != nil && err != io.EOF {
		n.err = err
	}
	return k, err
}

// classify turns a transport error into an *Error. parent is the caller's
// context and fetchCtx the one carrying the policy's timeout.
func (c *Client) classify(parent, fetchCtx context.Context, u *url.URL, err error) error {
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	// After a redirect the failing request is not the first one: name the
	// URL that failed, which *url.Error carries.
	var ue *url.Error
	if errors.As(err, &ue) {
		if fu, perr := url.Parse(ue.URL); perr == nil && fu.Host != "" {
			u = fu
		}
	}
	where := u.Redacted()
	switch {
	case parent.Err() != nil && errors.Is(parent.Err(), context.DeadlineExceeded):
		return &Error{Reason: ReasonTimeout, Status: http.StatusGatewayTimeout, Err: fmt.Errorf("%s: the request's deadline passed: %w", where, parent.Err())}
	case parent.Err() != nil:
		return &Error{Reason: ReasonCanceled, Status: StatusClientClosedRequest, Err: fmt.Errorf("%s: the request was cancelled: %w", where, parent.Err())}
	case errors.Is(fetchCtx.Err(), context.DeadlineExceeded):
		return &Error{Reason: ReasonTimeout, Status: http.StatusGatewayTimeout, Err: fmt.Errorf("%s did not deliver the image within %v", where, c.policy.Timeout)}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return &Error{Reason: ReasonDNS, Status: http.StatusBadGateway, Err: fmt.Errorf("could not resolve host %q: %w", u.Hostname(), dnsErr)}
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		if opErr.Timeout() {
			return &Error{Reason: ReasonTimeout, Status: http.StatusGatewayTimeout, Err: fmt.Errorf("could not connect to %s within %v", u.Host, c.policy.ConnectTimeout)}
		}
		return &Error{Reason: ReasonConnect, Status: http.StatusBadGateway, Err: fmt.Errorf("could not connect to %s: %w", u.Host, opErr.Err)}
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return &Error{Reason: ReasonTimeout, Status: http.StatusGatewayTimeout, Err: fmt.Errorf("%s timed out: %w", where, err)}
	}
	return &Error{Reason: ReasonUpstream, Status: http.StatusBadGateway, Err: fmt.Errorf("%s: %w", where, err)}
}
