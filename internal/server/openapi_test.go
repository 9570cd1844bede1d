package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// openAPIDoc is the part of the OpenAPI document the tests read.
type openAPIDoc struct {
	OpenAPI string `json:"openapi"`
	Paths   map[string]map[string]struct {
		OperationID string `json:"operationId"`
		Summary     string `json:"summary"`
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

// TestOpenAPIExamplesWork sends every JSON request example of the document
// that needs no network to a running server: what Swagger's "Try it out"
// sends must work.
func TestOpenAPIExamplesWork(t *testing.T) {
	doc := loadOpenAPI(t)
	ts := startServer(t, Config{}, newFake())
	sent := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if op.RequestBody == nil {
				continue
			}
			for name, ex := range op.RequestBody.Content["application/json"].Examples {
				if strings.Contains(string(ex.Value), `"url"`) {
					continue // would fetch from the internet
				}
				r := do(t, strings.ToUpper(method), ts.url+concrete(path), "application/json", ex.Value)
				if r.code != http.StatusOK {
					t.Errorf("%s %s example %q: status %d: %.300s", method, path, name, r.code, r.body)
				}
				sent++
			}
		}
	}
	if sent < 5 {
		t.Errorf("only %d examples sent; the document should carry base64 and v2 examples", sent)
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
