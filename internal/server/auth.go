package server

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
)

// maxTokenFile bounds the token file: a few tokens, not a database.
const maxTokenFile = 64 << 10

// errUnauthorized is the answer without a valid bearer token.
var errUnauthorized = errors.New("missing or invalid bearer token: send Authorization: Bearer TOKEN")

// tokens are the bearer tokens the server accepts, re-readable from their
// file. Only SHA-256 digests are kept and compared, in constant time, so
// neither a token's length nor its prefix leaks through timing.
type tokens struct {
	path string
	mu   sync.RWMutex
	sums [][sha256.Size]byte
}

// loadTokens reads path; an empty path means no authentication (nil).
func loadTokens(path string) (*tokens, error) {
	if path == "" {
		return nil, nil
	}
	t := &tokens{path: path}
	if err := t.reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// reload re-reads the token file; on error the previous tokens stay.
func (t *tokens) reload() error {
	if t == nil {
		return nil
	}
	f, err := os.Open(t.path)
	if err != nil {
		return fmt.Errorf("server: reading token file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return fmt.Errorf("server: reading token file %s: %w", t.path, err)
	}
	if len(data) > maxTokenFile {
		return fmt.Errorf("server: token file %s is larger than %d bytes", t.path, maxTokenFile)
	}
	var sums [][sha256.Size]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		tok := strings.TrimSpace(sc.Text())
		if tok == "" || strings.HasPrefix(tok, "#") {
			continue
		}
		if len(tok) < 16 || strings.ContainsAny(tok, " \t") {
			return fmt.Errorf("server: token file %s line %d: a token must be at least 16 characters without spaces", t.path, line)
		}
		sums = append(sums, sha256.Sum256([]byte(tok)))
	}
	if len(sums) == 0 {
		return fmt.Errorf("server: token file %s holds no token", t.path)
	}
	t.mu.Lock()
	t.sums = sums
	t.mu.Unlock()
	return nil
}

// valid reports whether an Authorization header value carries an accepted
// bearer token. Every token is compared, so the time taken does not say
// which one matched.
func (t *tokens) valid(header string) bool {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	t.mu.RLock()
	defer t.mu.RUnlock()
	match := 0
	for i := range t.sums {
		match |= subtle.ConstantTimeCompare(sum[:], t.sums[i][:])
	}
	return match == 1
}

// auth wraps a protected endpoint: without tokens configured it is next
// itself; otherwise a request without a valid bearer token gets 401 with
// WWW-Authenticate.
func (s *Server) auth(next http.Handler) http.Handler {
	if s.tokens == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.tokens.valid(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fashion-classifier"`)
			writeError(w, http.StatusUnauthorized, errUnauthorized.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}
