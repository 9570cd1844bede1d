package server

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeTokens(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAuthREST checks bearer tokens on the REST side: protected endpoints
// refuse a missing or wrong token with 401 and WWW-Authenticate and accept
// any listed token; health, readiness and metrics stay open; Reload
// re-reads the file.
func TestAuthREST(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	const tokA, tokB = "token-a-0123456789abcdef", "token-b-0123456789abcdef"
	writeTokens(t, file, "# comment", tokA, "", tokB)
	ts := startServer(t, Config{AuthTokenFile: file}, newFake())
	img, _ := testImage(t, 100)
	call := func(method, path, auth string) response {
		req, err := http.NewRequest(method, ts.url+path, strings.NewReader(string(img)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "image/png")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return send(t, req)
	}
	protected := []struct{ method, path string }{
		{"POST", "/v1/classify"},
		{"GET", "/v1/model"},
		{"GET", "/v2/models/fashion-mnist"},
		{"GET", "/v2/models/fashion-mnist/ready"},
		{"POST", "/v2/repository/index"},
		{"POST", "/v2/repository/models/fashion-mnist/unload"},
	}
	for _, p := range protected {
		for _, auth := range []string{"", "Bearer wrong-token-0123456789", "Basic " + tokA, "Bearer " + tokA + "x", "Bearer"} {
			r := call(p.method, p.path, auth)
			if r.code != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s with %q: %d (WWW-Authenticate %q), want 401 with a Bearer challenge", p.method, p.path, auth, r.code, r.header.Get("WWW-Authenticate"))
			}
		}
	}
	for _, tok := range []string{tokA, tokB} {
		if r := call("POST", "/v1/classify", "Bearer "+tok); r.code != http.StatusOK {
			t.Errorf("right token: %d %s", r.code, r.body)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics", "/openapi.json"} {
		if r := call("GET", path, ""); r.code != http.StatusOK {
			t.Errorf("open endpoint %s without a token: %d", path, r.code)
		}
	}
	// Reload picks up a new file; a broken file keeps the old tokens.
	writeTokens(t, file, tokB)
	ts.Reload(context.Background())
	if r := call("POST", "/v1/classify", "Bearer "+tokA); r.code != http.StatusUnauthorized {
		t.Errorf("removed token still accepted after reload: %d", r.code)
	}
	writeTokens(t, file, "short")
	ts.Reload(context.Background())
	if r := call("POST", "/v1/classify", "Bearer "+tokB); r.code != http.StatusOK {
		t.Errorf("a bad token file dropped the previous tokens: %d", r.code)
	}
}

func TestAuthMetricsAndBadFiles(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, file, "token-a-0123456789abcdef")
	ts := startServer(t, Config{AuthTokenFile: file, AuthMetrics: true}, newFake())
	if r := do(t, "GET", ts.url+"/metrics", "", nil); r.code != http.StatusUnauthorized {
		t.Errorf("/metrics with AuthMetrics and no token: %d", r.code)
	}
	for name, content := range map[string]string{"empty": "# nothing\n\n", "short": "abc\n", "spaces": "has a space inside it ok\n"} {
		p := filepath.Join(t.TempDir(), name)
		writeTokens(t, p, content)
		if _, err := New(Config{AuthTokenFile: p}, newFake(), nil); err == nil {
			t.Errorf("token file %s accepted", name)
		}
	}
	if _, err := New(Config{AuthTokenFile: filepath.Join(t.TempDir(), "missing")}, newFake(), nil); err == nil {
		t.Error("missing token file accepted")
	}
}
