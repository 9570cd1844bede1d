package server

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	swaggerFiles "github.com/swaggo/files/v2"
)

// static holds the page at / and the OpenAPI document, both served from the
// binary so the server needs no files and no CDN.
//
//go:embed static/index.html static/openapi.json static/samples/*.png
var static embed.FS

// exampleOrigin is the origin the OpenAPI document's example URLs are
// written with; handleOpenAPI replaces it with the origin the document was
// requested from, so Swagger UI's "Try it out" fetches this server's own
// sample image wherever it runs.
const exampleOrigin = "http://localhost:8080"

// hostKey is the context key under which a request's Host is stored, so
// the URL loaders can recognise URLs of the server's own samples.
type hostKey struct{}

// swaggerInitializer replaces the Swagger UI's sample configuration (which
// points at the petstore demo on the internet) with our own document.
const swaggerInitializer = `window.onload = function() {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout"
  });
};
`

// serveStatic answers one embedded file with its content type.
func serveStatic(w http.ResponseWriter, name, contentType string) {
	b, err := static.ReadFile(name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "embedded file "+name+" is missing from the binary")
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// handleIndex serves the web page.
func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy",
		"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'")
	serveStatic(w, "static/index.html", "text/html; charset=utf-8")
}

// handleOpenAPI serves the OpenAPI 3 document with info.version set to the
// server's Config.Version, so the document reports the running build's
// version (internal/buildinfo) like "fashion version" and GET /v2 do.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	b, err := openAPIDocument(s.cfg.Version, requestOrigin(r))
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(b)
}

// requestOrigin is the scheme and host a request was addressed to.
func requestOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// openAPIDocument returns the embedded OpenAPI document with info.version
// replaced by version and example URLs pointing at origin.
func openAPIDocument(version, origin string) ([]byte, error) {
	b, err := static.ReadFile("static/openapi.json")
	if err != nil {
		return nil, fmt.Errorf("embedded openapi.json is missing from the binary: %w", err)
	}
	if origin != "" {
		// JSON-escape the origin like the document's strings.
		o, _ := json.Marshal(origin)
		b = bytes.ReplaceAll(b, []byte(`"`+exampleOrigin+`/`), append(o[:len(o)-1], '/'))
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("embedded openapi.json: %w", err)
	}
	var info map[string]any
	if err := json.Unmarshal(doc["info"], &info); err != nil {
		return nil, fmt.Errorf("embedded openapi.json: info: %w", err)
	}
	info["version"] = version
	if doc["info"], err = json.Marshal(info); err != nil {
		return nil, err
	}
	return json.MarshalIndent(doc, "", " ")
}

// handleDocsRedirect sends /docs to /docs/ so the UI's relative asset paths
// resolve.
func (s *Server) handleDocsRedirect(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/docs/", http.StatusMovedPermanently)
}

// docsHandler serves the Swagger UI shipped by github.com/swaggo/files/v2,
// with our initializer in place of the sample one.
func (s *Server) docsHandler() http.Handler {
	files := http.StripPrefix("/docs/", http.FileServerFS(swaggerFiles.FS))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/docs/swagger-initializer.js" {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			w.Write([]byte(swaggerInitializer))
			return
		}
		files.ServeHTTP(w, r)
	})
}

// sampleNames lists the embedded sample images, for error messages.
func sampleNames() []string {
	entries, _ := static.ReadDir("static/samples")
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".png") {
			names = append(names, e.Name())
		}
	}
	return names
}

// sampleImage returns the embedded sample called name, e.g. "ankle-boot.png".
func sampleImage(name string) ([]byte, bool) {
	if !slices.Contains(sampleNames(), name) {
		return nil, false
	}
	b, err := static.ReadFile("static/samples/" + name)
	return b, err == nil
}

// handleSample serves GET /samples/{name}: one of the embedded Fashion-MNIST
// test images, the targets of the documentation's example URLs.
func (s *Server) handleSample(w http.ResponseWriter, r *http.Request) {
	b, ok := sampleImage(r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no sample image %q; the samples are %s", r.PathValue("name"), strings.Join(sampleNames(), ", ")))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/png")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "public, max-age=86400")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(b)
}

// ownSample returns the sample image rawURL names when it points at this
// server's own /samples/ path, that is when its host is the Host the
// request came to. Such URLs are answered from memory without any network
// (the fetch policy would refuse a loopback address anyway), so the URL
// endpoints can be tried on a machine without internet access. Nothing
// but the embedded, public samples can be read this way.
func ownSample(ctx context.Context, rawURL string) ([]byte, bool) {
	host, _ := ctx.Value(hostKey{}).(string)
	u, err := url.Parse(rawURL)
	if err != nil || host == "" || (u.Scheme != "http" && u.Scheme != "https") || !strings.EqualFold(u.Host, host) {
		return nil, false
	}
	name, ok := strings.CutPrefix(u.Path, "/samples/")
	if !ok {
		return nil, false
	}
	return sampleImage(name)
}
