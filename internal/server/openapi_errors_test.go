package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fashion-classifier/fashion/internal/fetch"
)

// TestOpenAPIErrorExamplesAreRealMessages makes every documented error
// example happen on a real server and checks the document quotes the
// message the server actually writes, so users can search for what they
// see. Images are served from a loopback server whose address is written
// as https://example.com in the document; the fetch timeout runs at 200ms
// here and is documented at its 10s default.
func TestOpenAPIErrorExamplesAreRealMessages(t *testing.T) {
	images := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/huge.png":
			w.Write(pngBomb(t, 10000, 10000))
		case "/notes.txt":
			w.Write([]byte("just text, not an image"))
		case "/slow.png": // headers at once, then a body that never comes
			w.Header().Set("Content-Type", "image/png")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer images.Close()
	policy := fetch.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Timeout: 200 * time.Millisecond}
	ts := startServer(t, Config{Fetch: policy}, newFake())
	strict := startServer(t, Config{}, newFake()) // the default fetch policy
	normalise := strings.NewReplacer(images.URL, "https://example.com", "200ms", "10s").Replace

	q := url.QueryEscape
	get := func(base, path string) func() response {
		return func() response { return do(t, http.MethodGet, base+path, "", nil) }
	}
	post := func(base, path, ct, body string) func() response {
		return func() response { return do(t, http.MethodPost, base+path, ct, []byte(body)) }
	}
	v2bad := `{"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"FP32","data":[0.5]}]}`
	big := strings.Repeat("x", 10<<20+1)
	// Triggers by "METHOD /path STATUS"; a {route} placeholder is filled
	// with the path under test.
	urlTriggers := map[string]func(route string) func() response{
		"400": func(route string) func() response { return get(ts.url, route+"?url="+q("ftp://example.com/a.png")) },
		"403": func(route string) func() response {
			return get(strict.url, route+"?url="+q("http://169.254.169.254/latest/meta-data/"))
		},
		"413": func(route string) func() response { return get(ts.url, route+"?url="+q(images.URL+"/huge.png")) },
		"415": func(route string) func() response { return get(ts.url, route+"?url="+q(images.URL+"/notes.txt")) },
		"502": func(route string) func() response { return get(ts.url, route+"?url="+q(images.URL+"/missing.png")) },
		"504": func(route string) func() response { return get(ts.url, route+"?url="+q(images.URL+"/slow.png")) },
	}
	triggers := map[string]func() response{
		"POST /v1/classify 400": post(ts.url, "/v1/classify", "application/json", `{}`),
		"POST /v1/classify 403": post(strict.url, "/v1/classify", "application/json", `{"url":"http://169.254.169.254/latest/meta-data/"}`),
		"POST /v1/classify 413": post(ts.url, "/v1/classify", "image/png", big),
		"POST /v1/classify 415": post(ts.url, "/v1/classify", "text/plain", "hello"),
	}
	for _, route := range []string{"/image-view", "/image-classify"} {
		for code, f := range urlTriggers {
			triggers["GET "+route+" "+code] = f(route)
		}
	}
	for _, p := range []string{"/v2/models/{name}", "/v2/models/{name}/versions/{version}"} {
		model := strings.Replace(p, "{name}", "resnet", 1)
		model = strings.Replace(model, "{version}", "1", 1)
		triggers["GET "+p+" 404"] = get(ts.url, model)
		triggers["GET "+p+"/ready 404"] = get(ts.url, model+"/ready")
		triggers["POST "+p+"/infer 404"] = post(ts.url, model+"/infer", "application/json", v2bad)
		triggers["POST "+p+"/infer 400"] = post(ts.url, concrete(p)+"/infer", "application/json", v2bad)
		triggers["POST "+p+"/infer 413"] = post(ts.url, concrete(p)+"/infer", "application/json", big)
	}

	b, err := static.ReadFile("static/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Content map[string]struct {
					Example json.RawMessage `json:"example"`
				} `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			for code, resp := range op.Responses {
				var ex struct{ Error string }
				if json.Unmarshal(resp.Content["application/json"].Example, &ex) != nil || ex.Error == "" {
					continue
				}
				key := strings.ToUpper(method) + " " + path + " " + code
				if code == "503" {
					if ex.Error != errQueueFull.Error() {
						t.Errorf("%s: example %q, the server says %q", key, ex.Error, errQueueFull.Error())
					}
					continue
				}
				trigger, ok := triggers[key]
				if !ok {
					t.Errorf("%s: error example %q has no trigger in this test; add one", key, ex.Error)
					continue
				}
				r := trigger()
				var got struct{ Error string }
				if err := json.Unmarshal(r.body, &got); err != nil || strconv.Itoa(r.code) != code {
					t.Errorf("%s: the trigger got status %d: %.300s", key, r.code, r.body)
					continue
				}
				if msg := normalise(got.Error); msg != ex.Error {
					t.Errorf("%s:\n   example %q\nthe server %q", key, ex.Error, msg)
				}
				checked++
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d error examples checked", checked)
	}
}
