package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"

	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/repository"
)

// This file implements the KServe / Open Inference Protocol v2 REST API
// (https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/),
// including the binary tensor data extension Triton's clients use by
// default, so those clients work unchanged.

// Names of the tensors the model takes and gives under the v2 protocol.
const (
	v2InputFP32  = "input"
	v2InputUINT8 = "input_uint8"
	v2Output     = "probabilities"
	// v2OODOutput is the extra output of models with an
	// out-of-distribution detector: each image's score (FP32 [n]; above
	// the model's threshold means "not like the training data").
	v2OODOutput = "ood_score"
	// v2InDistOutput is the detector's verdict beside ood_score: BOOL
	// [n], true when the image looks like the training data (the score
	// within the threshold recorded in the model file).
	v2InDistOutput = "in_distribution"
	v2Platform     = "fashion-go"
	v2HeaderLen    = "Inference-Header-Content-Length"
	maxDataNested  = 8 // deepest nesting accepted in a tensor's "data"
)

// V2TensorMetadata describes one tensor in model metadata.
type V2TensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// V2ModelMetadata answers GET /v2/models/{name}.
type V2ModelMetadata struct {
	Name     string             `json:"name"`
	Versions []string           `json:"versions"`
	Platform string             `json:"platform"`
	Inputs   []V2TensorMetadata `json:"inputs"`
	Outputs  []V2TensorMetadata `json:"outputs"`
	// Parameters carries what the protocol has no field for: "precision"
	// ("float32", or "int8" for a quantized model) and "storage" (how the
	// file stores the float weights: "f32", or "f16" for half precision).
	Parameters map[string]any `json:"parameters,omitempty"`
}

// V2ServerMetadata answers GET /v2.
type V2ServerMetadata struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

// V2InferRequest is the body of POST /v2/models/{name}/infer.
type V2InferRequest struct {
	ID         string           `json:"id,omitempty"`
	Parameters map[string]any   `json:"parameters,omitempty"`
	Inputs     []V2InferInput   `json:"inputs"`
	Outputs    []V2RequestedOut `json:"outputs,omitempty"`
}

// V2InferInput is one input tensor of an inference request. Data holds the
// values row-major, flat or nested; with the binary extension it is absent
// and Parameters["binary_data_size"] says how many bytes follow the JSON.
type V2InferInput struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

// V2RequestedOut names an output the client wants.
type V2RequestedOut struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// V2InferResponse answers an inference request.
type V2InferResponse struct {
	ModelName    string          `json:"model_name"`
	ModelVersion string          `json:"model_version,omitempty"`
	ID           string          `json:"id,omitempty"`
	Outputs      []V2InferOutput `json:"outputs"`
}

// V2InferOutput is one output tensor, always sent as JSON data: Data for
// FP32 tensors, Bools for BOOL ones (in JSON both are "data").
type V2InferOutput struct {
	Name     string    `json:"name"`
	Datatype string    `json:"datatype"`
	Shape    []int64   `json:"shape"`
	Data     []float32 `json:"data"`
	Bools    []bool    `json:"-"`
}

// v2OutputJSON is V2InferOutput's JSON form, "data" of either type.
type v2OutputJSON struct {
	Name     string          `json:"name"`
	Datatype string          `json:"datatype"`
	Shape    []int64         `json:"shape"`
	Data     json.RawMessage `json:"data"`
}

// MarshalJSON writes "data" from Bools for a BOOL tensor, else from Data.
func (o V2InferOutput) MarshalJSON() ([]byte, error) {
	var data any = o.Data
	if o.Datatype == "BOOL" {
		data = o.Bools
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v2OutputJSON{Name: o.Name, Datatype: o.Datatype, Shape: o.Shape, Data: b})
}

// UnmarshalJSON reads "data" into Bools for a BOOL tensor, else into Data.
func (o *V2InferOutput) UnmarshalJSON(b []byte) error {
	var j v2OutputJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*o = V2InferOutput{Name: j.Name, Datatype: j.Datatype, Shape: j.Shape}
	if len(j.Data) == 0 {
		return nil
	}
	if j.Datatype == "BOOL" {
		return json.Unmarshal(j.Data, &o.Bools)
	}
	return json.Unmarshal(j.Data, &o.Data)
}

// v2Input is a decoded inference request: n normalised images.
type v2Input struct {
	id string
	x  []float32
	n  int
}

// decodeInferRequest parses an inference request whose JSON part is header
// and whose binary tensor data (if any) is bin, and returns the images
// normalised with info. It accepts one input tensor: FP32 already
// normalised, or UINT8 raw pixels, shaped [n,1,28,28] or [n,28,28], with n
// at most maxImages.
func decodeInferRequest(header, bin []byte, info modelfile.Info, maxImages int) (*v2Input, error) {
	var req V2InferRequest
	dec := json.NewDecoder(bytes.NewReader(header))
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("inference request JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("inference request JSON: unexpected data after the request object")
	}
	for _, o := range req.Outputs {
		if err := checkOutputName(o.Name); err != nil {
			return nil, err
		}
	}
	if len(req.Inputs) != 1 {
		return nil, fmt.Errorf("got %d input tensors, want exactly 1 (%q FP32 [-1,1,28,28] or %q UINT8 [-1,28,28])",
			len(req.Inputs), v2InputFP32, v2InputUINT8)
	}
	in := req.Inputs[0]
	n, err := imagesInShape(in.Shape)
	if err != nil {
		return nil, fmt.Errorf("input %q: %w", in.Name, err)
	}
	if n > maxImages {
		return nil, fmt.Errorf("input %q: %d images, at most %d per request", in.Name, n, maxImages)
	}
	want := n * modelfile.Pixels
	out := &v2Input{id: req.ID, n: n, x: make([]float32, want)}

	binSize, hasBin, err := binaryDataSize(in.Parameters)
	if err != nil {
		return nil, fmt.Errorf("input %q: %w", in.Name, err)
	}
	if hasBin && in.Data != nil {
		return nil, fmt.Errorf("input %q: has both \"data\" and binary_data_size", in.Name)
	}
	if !hasBin && len(bin) > 0 {
		return nil, fmt.Errorf("%d bytes of binary data follow the JSON but no input declares binary_data_size", len(bin))
	}
	if hasBin && binSize != int64(len(bin)) {
		return nil, fmt.Errorf("input %q: binary_data_size is %d but %d bytes follow the JSON", in.Name, binSize, len(bin))
	}

	switch in.Datatype {
	case "FP32":
		if hasBin {
			if err := decodeFP32LE(out.x, bin); err != nil {
				return nil, fmt.Errorf("input %q: %w for shape %v", in.Name, err, in.Shape)
			}
			return out, nil
		}
		i := 0
		err := scanTensorData(in.Data, func(tok []byte) error {
			if i == want {
				return fmt.Errorf("more than %d values for shape %v", want, in.Shape)
			}
			v, err := strconv.ParseFloat(string(tok), 32)
			if err != nil || math.IsInf(v, 0) {
				return fmt.Errorf("value %d (%s) is not a finite FP32 number", i, tok)
			}
			out.x[i] = float32(v)
			i++
			return nil
		})
		if err == nil && i != want {
			err = fmt.Errorf("%d values, want %d for shape %v", i, want, in.Shape)
		}
		if err != nil {
			return nil, fmt.Errorf("input %q data: %w", in.Name, err)
		}
		return out, nil

	case "UINT8":
		var pix []uint8
		if hasBin {
			if len(bin) != want {
				return nil, fmt.Errorf("input %q: %d bytes of UINT8 binary data, want %d for shape %v", in.Name, len(bin), want, in.Shape)
			}
			pix = bin
		} else {
			pix = make([]uint8, 0, want)
			err := scanTensorData(in.Data, func(tok []byte) error {
				if len(pix) == want {
					return fmt.Errorf("more than %d values for shape %v", want, in.Shape)
				}
				v, ok := parseUint8(tok)
				if !ok {
					return fmt.Errorf("value %d (%s) is not an integer from 0 to 255", len(pix), tok)
				}
				pix = append(pix, v)
				return nil
			})
			if err == nil && len(pix) != want {
				err = fmt.Errorf("%d values, want %d for shape %v", len(pix), want, in.Shape)
			}
			if err != nil {
				return nil, fmt.Errorf("input %q data: %w", in.Name, err)
			}
		}
		info.Normalize(out.x, pix)
		return out, nil
	}
	return nil, fmt.Errorf("input %q: datatype %q is not supported; use FP32 (normalised) or UINT8 (pixels)", in.Name, in.Datatype)
}

// decodeFP32LE fills dst from little-endian FP32 bytes, which must be
// exactly 4×len(dst) of finite values: the binary form of an FP32 tensor on
// both protocols.
func decodeFP32LE(dst []float32, b []byte) error {
	if len(b) != 4*len(dst) {
		return fmt.Errorf("%d bytes of FP32 data, want %d", len(b), 4*len(dst))
	}
	for i := range dst {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("value %d is %v, want a finite number", i, v)
		}
		dst[i] = v
	}
	return nil
}

// encodeFP32LE is the little-endian byte form of v.
func encodeFP32LE(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// imagesInShape returns n for a shape [n,1,28,28] or [n,28,28].
func imagesInShape(shape []int64) (int, error) {
	ok := false
	switch len(shape) {
	case 4:
		ok = shape[1] == 1 && shape[2] == modelfile.Side && shape[3] == modelfile.Side
	case 3:
		ok = shape[1] == modelfile.Side && shape[2] == modelfile.Side
	}
	if !ok || shape[0] < 1 {
		return 0, fmt.Errorf("shape %v: want [n,1,%d,%d] or [n,%d,%d] with n ≥ 1", shape, modelfile.Side, modelfile.Side, modelfile.Side, modelfile.Side)
	}
	if shape[0] > math.MaxInt32/modelfile.Pixels {
		return 0, fmt.Errorf("shape %v: too many images", shape)
	}
	return int(shape[0]), nil
}

// binaryDataSize reads the binary tensor data extension's parameter.
func binaryDataSize(params map[string]any) (int64, bool, error) {
	v, ok := params["binary_data_size"]
	if !ok {
		return 0, false, nil
	}
	f, isNum := v.(float64)
	if !isNum || f < 0 || f != math.Trunc(f) || f > math.MaxInt32 {
		return 0, false, fmt.Errorf("binary_data_size %v: want a non-negative integer", v)
	}
	return int64(f), true, nil
}

// parseUint8 parses a JSON number that must be an integer from 0 to 255;
// "12.0" and "1.2e1" are accepted, as numpy-produced JSON writes them so.
func parseUint8(tok []byte) (uint8, bool) {
	v := 0
	for _, c := range tok {
		if c < '0' || c > '9' {
			f, err := strconv.ParseFloat(string(tok), 64)
			if err != nil || f < 0 || f > 255 || f != math.Trunc(f) {
				return 0, false
			}
			return uint8(f), true
		}
		v = v*10 + int(c-'0')
		if v > 255 {
			return 0, false
		}
	}
	return uint8(v), len(tok) > 0
}

// scanTensorData walks a tensor's JSON "data" — a number or arrays of
// numbers nested up to maxDataNested deep — and calls f with each number's
// text in row-major order.
// Only the count of values is checked against the shape, as the protocol
// allows flat and nested forms alike.
func scanTensorData(data []byte, f func(tok []byte) error) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New(`missing "data"`)
	}
	p := &dataScanner{buf: data, f: f}
	p.skipSpace()
	if err := p.value(0); err != nil {
		return err
	}
	p.skipSpace()
	if p.pos != len(p.buf) {
		return fmt.Errorf("unexpected %q at offset %d", p.buf[p.pos], p.pos)
	}
	return nil
}

type dataScanner struct {
	buf []byte
	pos int
	f   func([]byte) error
}

func (p *dataScanner) skipSpace() {
	for p.pos < len(p.buf) {
		switch p.buf[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *dataScanner) value(depth int) error {
	if p.pos >= len(p.buf) {
		return errors.New("unexpected end of data")
	}
	if p.buf[p.pos] != '[' {
		return p.number()
	}
	if depth == maxDataNested {
		return fmt.Errorf("data nested deeper than %d levels", maxDataNested)
	}
	p.pos++
	p.skipSpace()
	if p.pos < len(p.buf) && p.buf[p.pos] == ']' {
		p.pos++
		return nil
	}
	for {
		p.skipSpace()
		if err := p.value(depth + 1); err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.buf) {
			return errors.New("unexpected end of data: unclosed [")
		}
		switch p.buf[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return nil
		default:
			return fmt.Errorf("unexpected %q at offset %d, want , or ]", p.buf[p.pos], p.pos)
		}
	}
}

// number checks a JSON number's grammar and hands its text to f.
func (p *dataScanner) number() error {
	start := p.pos
	b := p.buf
	i := p.pos
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - j
	}
	if digits() == 0 {
		return fmt.Errorf("invalid value at offset %d: want a number", start)
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return fmt.Errorf("invalid number at offset %d", start)
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return fmt.Errorf("invalid number at offset %d", start)
		}
	}
	p.pos = i
	return p.f(b[start:i])
}

func (s *Server) handleV2Server(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, V2ServerMetadata{Name: "fashion-classifier", Version: s.cfg.Version,
		Extensions: v2Extensions})
}

// v2Extensions are the protocol extensions the server implements.
var v2Extensions = []string{"binary_tensor_data", "model_repository"}

func (s *Server) handleV2Live(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"live": true})
}

func (s *Server) handleV2Ready(w http.ResponseWriter, r *http.Request) {
	if !s.isReady() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]bool{"ready": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ready": true})
}

// handleV2ModelReady answers whether a model (version) can serve: 200 with
// ready true, 503 with ready false while it loads or after an unload, 404 if
// the repository has no such model or version.
func (s *Server) handleV2ModelReady(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ref, err := s.repo.Acquire(name, r.PathValue("version"))
	if errors.Is(err, repository.ErrNotFound) {
		s.fail(w, r, acquireError(err))
		return
	}
	ready := err == nil && s.ready.Load()
	if ref != nil {
		ref.Release()
	}
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"name": name, "ready": ready})
}

// v2Metadata is a model's v2 description; versions are its ready versions.
func v2Metadata(m *servedModel, versions []string) V2ModelMetadata {
	md := V2ModelMetadata{
		Name:     m.name,
		Versions: versions,
		Platform: v2Platform,
		Inputs: []V2TensorMetadata{
			{Name: v2InputFP32, Datatype: "FP32", Shape: []int64{-1, 1, modelfile.Side, modelfile.Side}},
			{Name: v2InputUINT8, Datatype: "UINT8", Shape: []int64{-1, modelfile.Side, modelfile.Side}},
		},
		Outputs: []V2TensorMetadata{
			{Name: v2Output, Datatype: "FP32", Shape: []int64{-1, int64(len(m.info.Classes))}},
		},
	}
	md.Parameters = map[string]any{}
	if m.info.Precision != "" {
		md.Parameters["precision"] = m.info.Precision
	}
	if m.info.Storage != "" {
		md.Parameters["storage"] = m.info.Storage
	}
	if m.ood != nil {
		md.Outputs = append(md.Outputs,
			V2TensorMetadata{Name: v2OODOutput, Datatype: "FP32", Shape: []int64{-1}},
			V2TensorMetadata{Name: v2InDistOutput, Datatype: "BOOL", Shape: []int64{-1}})
	}
	return md
}

// checkOutputName refuses an output a request asks for that no model gives.
func checkOutputName(name string) error {
	switch name {
	case v2Output, v2OODOutput, v2InDistOutput:
		return nil
	}
	return fmt.Errorf("unknown output %q: the outputs are %q and, for models with an out-of-distribution detector, %q and %q", name, v2Output, v2OODOutput, v2InDistOutput)
}

// oodOutputs are the detector's two outputs for n images: each score
// (FP32) and whether it is within the model's threshold (BOOL).
func oodOutputs(m *servedModel, scores []float64) (score []float32, in []bool) {
	score, in = make([]float32, len(scores)), make([]bool, len(scores))
	for i, sc := range scores {
		score[i] = float32(sc)
		in[i], _ = m.ood.InDistribution(sc)
	}
	return score, in
}

func (s *Server) handleV2Model(w http.ResponseWriter, r *http.Request) {
	m := modelOf(r.Context())
	writeJSON(w, http.StatusOK, v2Metadata(m, s.repo.Versions(m.name)))
}

// handleV2Infer is POST /v2/models/{name}[/versions/{version}]/infer.
func (s *Server) handleV2Infer(w http.ResponseWriter, r *http.Request, body []byte, _ *lease) {
	m := modelOf(r.Context())
	if !s.acquireSlot(w, r) {
		return
	}
	defer s.inference.release()
	t := m.batch.announce(1)
	defer t.release()
	header, bin := body, []byte(nil)
	if v := r.Header.Get(v2HeaderLen); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > len(header) {
			s.fail(w, r, withStatus(http.StatusBadRequest,
				fmt.Errorf("%s: %q is not a length within the %d-byte body", v2HeaderLen, v, len(header))))
			return
		}
		header, bin = header[:n], header[n:]
	}
	in, err := decodeInferRequest(header, bin, m.info, s.cfg.MaxImages)
	if err != nil {
		s.fail(w, r, withStatus(http.StatusBadRequest, err))
		return
	}
	probs, scores, err := s.inferOOD(r.Context(), m, &t, in.x, in.n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.metrics.images.Add(float64(in.n))
	resp := V2InferResponse{
		ModelName:    m.name,
		ModelVersion: m.version,
		ID:           in.id,
		Outputs: []V2InferOutput{{
			Name: v2Output, Datatype: "FP32",
			Shape: []int64{int64(in.n), int64(len(m.info.Classes))},
			Data:  probs,
		}},
	}
	if scores != nil {
		score, inDist := oodOutputs(m, scores)
		resp.Outputs = append(resp.Outputs,
			V2InferOutput{Name: v2OODOutput, Datatype: "FP32", Shape: []int64{int64(in.n)}, Data: score},
			V2InferOutput{Name: v2InDistOutput, Datatype: "BOOL", Shape: []int64{int64(in.n)}, Bools: inDist})
	}
	writeJSON(w, http.StatusOK, resp)
}
