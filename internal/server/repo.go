package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/fashion-classifier/fashion/internal/repository"
)

// This file is Triton's model repository extension over REST:
// POST /v2/repository/index, /v2/repository/models/{name}/load and /unload.

// RepositoryIndexRequest is the optional body of POST /v2/repository/index.
type RepositoryIndexRequest struct {
	// Ready lists only the versions ready to serve.
	Ready bool `json:"ready,omitempty"`
}

// readOptionalJSON decodes a small optional JSON body into v; an empty body
// leaves v alone.
func (s *Server) readOptionalJSON(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		return withStatus(http.StatusRequestEntityTooLarge, fmt.Errorf("request body: %w", err))
	}
	if len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return withStatus(http.StatusBadRequest, fmt.Errorf("request JSON: %w", err))
	}
	return nil
}

// handleRepositoryIndex lists every model and version with its state.
func (s *Server) handleRepositoryIndex(w http.ResponseWriter, r *http.Request) {
	var req RepositoryIndexRequest
	if err := s.readOptionalJSON(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	idx := s.repo.Index(req.Ready)
	if idx == nil {
		idx = []repository.IndexEntry{}
	}
	writeJSON(w, http.StatusOK, idx)
}

// repositoryError is the status of a failed load or unload.
func repositoryError(err error) error {
	if errors.Is(err, repository.ErrNotFound) {
		return withStatus(http.StatusNotFound, err)
	}
	return withStatus(http.StatusBadRequest, err)
}

// handleRepositoryLoad loads (or reloads) a model; it answers once the new
// versions are warmed up and serving.
func (s *Server) handleRepositoryLoad(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Parameters map[string]any `json:"parameters,omitempty"`
	}
	if err := s.readOptionalJSON(w, r, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	// The load outlives a client that goes away: a half-done load would
	// only be repeated.
	if err := s.repo.Load(context.WithoutCancel(r.Context()), r.PathValue("name")); err != nil {
		s.fail(w, r, repositoryError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// handleRepositoryUnload unloads a model; requests already running on it
// finish first.
func (s *Server) handleRepositoryUnload(w http.ResponseWriter, r *http.Request) {
	if err := s.repo.Unload(r.PathValue("name")); err != nil {
		s.fail(w, r, repositoryError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}
