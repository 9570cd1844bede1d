package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// ClassifyRequest is the JSON form of POST /v1/classify. Exactly one of URL,
// ImageBase64 and Images is set: the first two ask for one image and get a
// Result, Images asks for a batch and gets a BatchResponse.
type ClassifyRequest struct {
	URL          string     `json:"url,omitempty"`
	ImageBase64  string     `json:"image_base64,omitempty"`
	Images       []ImageRef `json:"images,omitempty"`
	TopK         *int       `json:"top_k,omitempty"`
	IncludeInput bool       `json:"include_input,omitempty"`
}

// ImageRef names one image of a JSON batch, by URL or as base64 bytes
// (optionally a data: URL); exactly one of the two is set.
type ImageRef struct {
	URL         string `json:"url,omitempty"`
	ImageBase64 string `json:"image_base64,omitempty"`
}

// fetchParallelism bounds how many URLs of one JSON batch are fetched at
// once, so one request cannot open hundreds of connections.
const fetchParallelism = 4

// decodeClassifyJSON parses and checks a JSON classification request.
// Unknown fields are errors, so a misspelt "image_base46" is reported
// instead of silently ignored.
func decodeClassifyJSON(data []byte, maxImages int) (*ClassifyRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var req ClassifyRequest
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("JSON body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("JSON body: unexpected data after the request object")
	}
	set := 0
	for _, ok := range []bool{req.URL != "", req.ImageBase64 != "", req.Images != nil} {
		if ok {
			set++
		}
	}
	if set != 1 {
		return nil, errors.New(`JSON body: set exactly one of "url", "image_base64" or "images"`)
	}
	if req.Images != nil && len(req.Images) == 0 {
		return nil, errors.New(`JSON body: "images" is empty`)
	}
	if len(req.Images) > maxImages {
		return nil, fmt.Errorf(`JSON body: %d images, at most %d per request`, len(req.Images), maxImages)
	}
	return &req, nil
}

// decodeBase64 decodes image bytes sent as base64, standard or URL alphabet,
// padded or not, optionally wrapped in a data: URL or broken into lines.
func decodeBase64(s string) ([]byte, error) {
	if strings.HasPrefix(s, "data:") {
		i := strings.Index(s, ",")
		if i < 0 || !strings.HasSuffix(s[:i], ";base64") {
			return nil, errors.New("image_base64: a data: URL must be base64-encoded (data:<type>;base64,<data>)")
		}
		s = s[i+1:]
	}
	if strings.ContainsAny(s, " \t\r\n") {
		s = strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, s)
	}
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if !strings.HasSuffix(s, "=") && len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("image_base64 is not valid base64: %w", err)
	}
	return b, nil
}

// load returns the bytes an ImageRef names, charged to l.
func (s *Server) load(ctx context.Context, l *lease, ref ImageRef) ([]byte, error) {
	switch {
	case ref.URL != "" && ref.ImageBase64 != "":
		return nil, withStatus(http.StatusBadRequest, errors.New(`set only one of "url" and "image_base64"`))
	case ref.URL != "":
		return s.fetchImage(ctx, l, ref.URL)
	case ref.ImageBase64 != "":
		b, err := decodeBase64(ref.ImageBase64)
		if err != nil {
			return nil, withStatus(http.StatusBadRequest, err)
		}
		if err := l.take(int64(len(b))); err != nil {
			return nil, err
		}
		return b, nil
	}
	return nil, withStatus(http.StatusBadRequest, errors.New(`image has neither "url" nor "image_base64"`))
}

// classifyJSON answers a JSON classification request. Every image is
// loaded (URLs fetched, fetchParallelism at a time, without an inference
// slot) before the slot is taken for decoding and inference.
func (s *Server) classifyJSON(w http.ResponseWriter, r *http.Request, body []byte, l *lease, o options) {
	req, err := decodeClassifyJSON(body, s.cfg.MaxImages)
	if err != nil {
		s.fail(w, r, withStatus(http.StatusBadRequest, err))
		return
	}
	if req.TopK != nil {
		if o.topK, err = s.checkTopK(*req.TopK, maxClasses(r.Context())); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	o.includeInput = o.includeInput || req.IncludeInput
	ctx := r.Context()

	if req.Images == nil {
		data, err := s.load(ctx, l, ImageRef{URL: req.URL, ImageBase64: req.ImageBase64})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.classifyOne(w, r, data, "", o)
		return
	}

	ups := make([]upload, len(req.Images))
	var wg sync.WaitGroup
	sem := make(chan struct{}, fetchParallelism)
	for i, ref := range req.Images {
		if ref.URL == "" || ref.ImageBase64 != "" {
			ups[i].data, ups[i].err = s.load(ctx, l, ref)
			continue
		}
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				ups[i].err = ctx.Err()
				return
			}
			defer func() { <-sem }()
			ups[i].data, ups[i].err = s.load(ctx, l, ref)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		s.fail(w, r, err)
		return
	}
	for i := range ups {
		if ups[i].err != nil {
			ups[i].err = fmt.Errorf("image %d: %w", i, ups[i].err)
		}
		ups[i].name = req.Images[i].URL // the answer's "file"
	}
	s.answerBatch(w, r, ups, o)
}
