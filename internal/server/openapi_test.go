package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// openAPIDoc is the part of the OpenAPI document the tests read.
type openAPIDoc struct {
	OpenAPI string `json:"openapi"`
	Paths   map[string]map[string]struct {
		OperationID string `json:"operationId"`
		Summary     string `json:"summary"`
		Parameters  []struct {
			Name    string `json:"name"`
			In      string `json:"in"`
			Example string `json:"example"`
		} `json:"parameters"`
		RequestBody *struct {
			Content map[string]struct {
				Examples map[string]struct {
					Value json.RawMessage `json:"value"`
				} `json:"examples"`
			} `json:"content"`
		} `json:"requestBody"`
		Responses map[string]json.RawMessage `json:"responses"`
	} `json:"paths"`
	Components struct {
		Schemas map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
}

func loadOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	b, err := static.ReadFile("static/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPIDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	return doc
}

// concrete turns a templated OpenAPI path into one a client would call.
func concrete(path string) string {
	return strings.NewReplacer("{name}", "fashion-mnist", "{version}", "1").Replace(path)
}

// TestOpenAPIMatchesRoutes checks the document and the router agree both
// ways: every documented operation is a real route, and every route (but the
// /docs redirect) is documented.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi version %q, want 3.x", doc.OpenAPI)
	}
	s, err := New(Config{}, newFake(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mux := s.routes()

	documented := map[string]bool{}
	ids := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			m := strings.ToUpper(method)
			req := httptest.NewRequest(m, concrete(path), nil)
			_, pattern := mux.Handler(req)
			if pattern == "" || !strings.HasPrefix(pattern, m+" ") {
				t.Errorf("documented %s %s is not a route (matched %q)", m, path, pattern)
				continue
			}
			documented[pattern] = true
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s %s: missing or duplicate operationId %q", m, path, op.OperationID)
			}
			ids[op.OperationID] = true
			if op.Summary == "" || len(op.Responses) == 0 {
				t.Errorf("%s %s: no summary or no responses", m, path)
			}
		}
	}
	for _, r := range s.routeTable() {
		if r.pattern == "GET /docs" {
			continue // a redirect to /docs/
		}
		if !documented[r.pattern] {
			t.Errorf("route %q is not in openapi.json", r.pattern)
		}
	}
	for _, name := range []string{"Result", "BatchResponse", "Error", "ClassifyRequest", "V2InferRequest", "V2InferResponse"} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("schema %s missing", name)
		}
	}
}

// TestOpenAPIExamplesWork sends every request example of the document as
// the server serves it to a running server with the default fetch policy
// and no network: what Swagger's "Try it out" sends must work, the URL
// examples included (they name the server's own samples).
func TestOpenAPIExamplesWork(t *testing.T) {
	ts := startServer(t, Config{}, newFake())
	r := do(t, http.MethodGet, ts.url+"/openapi.json", "", nil)
	var doc openAPIDoc
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	sent, urls := 0, 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if method == "get" {
				q := url.Values{}
				for _, p := range op.Parameters {
					if p.In == "query" && p.Name == "url" && p.Example != "" {
						if !strings.HasPrefix(p.Example, ts.url+"/samples/") {
							t.Errorf("%s %s: example url %q is not this server's sample", method, path, p.Example)
						}
						q.Set("url", p.Example)
					}
				}
				if len(q) > 0 {
					if r := do(t, http.MethodGet, ts.url+path+"?"+q.Encode(), "", nil); r.code != http.StatusOK {
						t.Errorf("GET %s with the example url: status %d: %.300s", path, r.code, r.body)
					}
					urls++
				}
			}
			if op.RequestBody == nil {
				continue
			}
			for name, ex := range op.RequestBody.Content["application/json"].Examples {
				if strings.Contains(string(ex.Value), `"url"`) {
					urls++
				}
				r := do(t, strings.ToUpper(method), ts.url+concrete(path), "application/json", ex.Value)
				if r.code != http.StatusOK {
					t.Errorf("%s %s example %q: status %d: %.300s", method, path, name, r.code, r.body)
				}
				sent++
			}
		}
	}
	if sent < 5 || urls < 4 {
		t.Errorf("%d request examples sent, %d with URLs; the document should carry base64, URL and v2 examples", sent, urls)
	}
}

// TestOpenAPIReportsServerVersion: /openapi.json carries the running
// build's version (Config.Version, from internal/buildinfo in "fashion
// serve"), not a number frozen in the embedded file.
func TestOpenAPIReportsServerVersion(t *testing.T) {
	ts := startServer(t, Config{Version: "9.8.7"}, newFake())
	r := do(t, http.MethodGet, ts.url+"/openapi.json", "", nil)
	if r.code != http.StatusOK {
		t.Fatalf("GET /openapi.json: status %d", r.code)
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Info    struct{ Version, Title string }
		Paths   map[string]json.RawMessage
	}
	if err := json.Unmarshal([]byte(r.body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Info.Version != "9.8.7" || doc.Info.Title == "" || doc.OpenAPI == "" || len(doc.Paths) < 10 {
		t.Errorf("served document: openapi %q, info %+v, %d paths; want version 9.8.7 and the whole document", doc.OpenAPI, doc.Info, len(doc.Paths))
	}
}

// TestOwnSamplesOnly: only URLs addressed to this server's own /samples/
// path are answered from memory; the same path on another host goes
// through the fetch policy like any URL.
func TestOwnSamplesOnly(t *testing.T) {
	ts := startServer(t, Config{}, newFake())
	for _, tc := range []struct {
		url  string
		want int
	}{
		{ts.url + "/samples/trouser.png", http.StatusOK},
		{strings.Replace(ts.url, "127.0.0.1", "localhost", 1) + "/samples/trouser.png", http.StatusForbidden}, // another Host: fetched, and loopback is refused
		{"http://other.invalid/samples/trouser.png", http.StatusBadGateway},
		{ts.url + "/samples/../openapi.json", http.StatusForbidden},
	} {
		if r := do(t, http.MethodGet, ts.url+"/image-classify?url="+url.QueryEscape(tc.url), "", nil); r.code != tc.want {
			t.Errorf("url=%s: status %d, want %d: %.200s", tc.url, r.code, tc.want, r.body)
		}
	}
	if r := do(t, http.MethodGet, ts.url+"/samples/nope.png", "", nil); r.code != http.StatusNotFound || !strings.Contains(string(r.body), "ankle-boot.png") {
		t.Errorf("GET /samples/nope.png: status %d: %s; want 404 listing the samples", r.code, r.body)
	}
	if r := do(t, http.MethodGet, ts.url+"/samples/dress.png", "", nil); r.code != http.StatusOK || !bytes.HasPrefix(r.body, []byte("\x89PNG")) {
		t.Errorf("GET /samples/dress.png: status %d, not a PNG", r.code)
	}
}
