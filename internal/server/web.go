package server

import (
	"embed"
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

// handleOpenAPI serves the OpenAPI 3 document.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	serveStatic(w, "static/openapi.json", "application/json")
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
