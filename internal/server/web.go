package server

import (
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	swaggerFiles "github.com/swaggo/files/v2"
)

// static holds the page at / and the OpenAPI document, both served from the
// binary so the server needs no files and no CDN.
//
//go:embed static/index.html static/openapi.json
var static embed.FS

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
	b, err := openAPIDocument(s.cfg.Version)
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

// openAPIDocument returns the embedded OpenAPI document with info.version
// replaced by version.
func openAPIDocument(version string) ([]byte, error) {
	b, err := static.ReadFile("static/openapi.json")
	if err != nil {
		return nil, fmt.Errorf("embedded openapi.json is missing from the binary: %w", err)
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
