package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/oipgrpc/pb"
	"github.com/fashion-classifier/fashion/internal/repository"
)

// This file serves the Open Inference Protocol over gRPC
// (inference.GRPCInferenceService from the official
// open_inference_grpc.proto, generated into package pb) and the standard
// gRPC health service. ModelInfer shares everything with REST: the model
// repository, each version's batcher, admission control, the request limits,
// the bearer tokens, the request log and the per-model metrics.

// grpcService implements pb.GRPCInferenceServiceServer on a Server.
type grpcService struct {
	pb.UnimplementedGRPCInferenceServiceServer
	s *Server
}

// grpcOpen are the methods that need no token: liveness, readiness, server
// metadata and the health service, as on REST.
var grpcOpen = map[string]bool{
	pb.GRPCInferenceService_ServerLive_FullMethodName:     true,
	pb.GRPCInferenceService_ServerReady_FullMethodName:    true,
	pb.GRPCInferenceService_ServerMetadata_FullMethodName: true,
	grpc_health_v1.Health_Check_FullMethodName:            true,
	grpc_health_v1.Health_Watch_FullMethodName:            true,
	grpc_health_v1.Health_List_FullMethodName:             true,
}

// NewGRPCServer returns a gRPC server with the inference and health
// services on s. Messages are capped at Config.MaxBody, like REST bodies.
func (s *Server) NewGRPCServer() *grpc.Server {
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(int(min(s.cfg.MaxBody, math.MaxInt32))),
		grpc.ChainUnaryInterceptor(s.grpcRecover, s.grpcAuth, s.grpcAdmit),
		grpc.ChainStreamInterceptor(s.grpcStreamAuth),
	)
	pb.RegisterGRPCInferenceServiceServer(gs, &grpcService{s: s})
	grpc_health_v1.RegisterHealthServer(gs, &grpcHealth{s: s})
	return gs
}

// grpcRecover turns a panic in a handler into codes.Internal.
func (s *Server) grpcRecover(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("gRPC handler panicked", "method", info.FullMethod, "panic", v)
			resp, err = nil, status.Error(codes.Internal, "internal error; see the server log")
		}
	}()
	return h(ctx, req)
}

// grpcAuthorized checks the bearer token in the call's metadata.
func (s *Server) grpcAuthorized(ctx context.Context, method string) error {
	if s.tokens == nil || grpcOpen[method] {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	ok := 0
	for _, v := range md.Get("authorization") {
		if s.tokens.valid(v) {
			ok = 1
		}
	}
	if subtle.ConstantTimeEq(int32(ok), 1) != 1 {
		return status.Error(codes.Unauthenticated, errUnauthorized.Error())
	}
	return nil
}

func (s *Server) grpcAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.grpcAuthorized(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) grpcStreamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.grpcAuthorized(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// grpcAdmit applies REST's request deadline and inference slots to
// ModelInfer (gRPC has read the message, within its size limit, already).
func (s *Server) grpcAdmit(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if info.FullMethod != pb.GRPCInferenceService_ModelInfer_FullMethodName {
		return h(ctx, req)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if !s.inference.tryAcquire() {
		s.metrics.admissionRejected.WithLabelValues("in_flight").Inc()
		return nil, status.Error(codes.Unavailable, errOverloaded.Error())
	}
	defer s.inference.release()
	return h(ctx, req)
}

// grpcError maps an error to a gRPC status, as statusOf does to HTTP.
func grpcError(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, repository.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, repository.ErrUnavailable):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, errQueueFull), errors.Is(err, errStopped):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

func (g *grpcService) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

func (g *grpcService) ServerReady(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return &pb.ServerReadyResponse{Ready: g.s.isReady()}, nil
}

func (g *grpcService) ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	ref, err := g.s.repo.Acquire(req.GetName(), req.GetVersion())
	if errors.Is(err, repository.ErrNotFound) {
		return nil, grpcError(err)
	}
	if ref != nil {
		ref.Release()
	}
	return &pb.ModelReadyResponse{Ready: err == nil && g.s.ready.Load()}, nil
}

func (g *grpcService) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return &pb.ServerMetadataResponse{Name: "fashion-classifier", Version: g.s.cfg.Version, Extensions: v2Extensions}, nil
}

func (g *grpcService) ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	ref, err := g.s.repo.Acquire(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, grpcError(err)
	}
	defer ref.Release()
	md := v2Metadata(ref.Model(), g.s.repo.Versions(req.GetName()))
	tensors := func(ts []V2TensorMetadata) []*pb.ModelMetadataResponse_TensorMetadata {
		out := make([]*pb.ModelMetadataResponse_TensorMetadata, len(ts))
		for i, t := range ts {
			out[i] = &pb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape}
		}
		return out
	}
	return &pb.ModelMetadataResponse{Name: md.Name, Versions: md.Versions, Platform: md.Platform,
		Inputs: tensors(md.Inputs), Outputs: tensors(md.Outputs)}, nil
}

// ModelInfer classifies the images of one input tensor: FP32 normalised or
// UINT8 pixels, shaped [n,1,28,28] or [n,28,28], in typed contents
// (fp32_contents, uint_contents) or raw_input_contents. The answer mirrors
// the request: raw_output_contents for raw inputs, fp32_contents otherwise.
func (g *grpcService) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	s := g.s
	id := req.GetId()
	if !validRequestID(id) {
		id = s.ids.next()
	}
	ctx = context.WithValue(ctx, requestIDKey{}, id)
	ref, err := s.repo.Acquire(req.GetModelName(), req.GetModelVersion())
	if err != nil {
		return nil, grpcError(err)
	}
	defer ref.Release()
	m := ref.Model()
	rec := s.newInference(ctx, ref, "grpc")
	ctx = context.WithValue(ctx, modelKey{}, rec)
	t := m.batch.announce(1)
	defer t.release()
	in, raw, err := decodeGRPCInfer(req, m.info, s.cfg.MaxImages)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	probs, scores, err := s.inferOOD(ctx, m, &t, in.x, in.n)
	s.finish(rec)
	if err != nil {
		return nil, grpcError(err)
	}
	s.metrics.images.Add(float64(in.n))
	out := &pb.ModelInferResponse_InferOutputTensor{
		Name: v2Output, Datatype: "FP32", Shape: []int64{int64(in.n), int64(len(m.info.Classes))},
	}
	resp := &pb.ModelInferResponse{ModelName: m.name, ModelVersion: m.version, Id: req.GetId(),
		Outputs: []*pb.ModelInferResponse_InferOutputTensor{out}}
	if raw {
		resp.RawOutputContents = [][]byte{encodeFP32LE(probs)}
	} else {
		out.Contents = &pb.InferTensorContents{Fp32Contents: probs}
	}
	if scores != nil {
		// The out-of-distribution score and verdict, as in the REST answer.
		score, inDist := oodOutputs(m, scores)
		o := &pb.ModelInferResponse_InferOutputTensor{Name: v2OODOutput, Datatype: "FP32", Shape: []int64{int64(in.n)}}
		b := &pb.ModelInferResponse_InferOutputTensor{Name: v2InDistOutput, Datatype: "BOOL", Shape: []int64{int64(in.n)}}
		if raw {
			// BOOL raw contents are one byte per element, 0 or 1.
			bools := make([]byte, len(inDist))
			for i, v := range inDist {
				if v {
					bools[i] = 1
				}
			}
			resp.RawOutputContents = append(resp.RawOutputContents, encodeFP32LE(score), bools)
		} else {
			o.Contents = &pb.InferTensorContents{Fp32Contents: score}
			b.Contents = &pb.InferTensorContents{BoolContents: inDist}
		}
		resp.Outputs = append(resp.Outputs, o, b)
	}
	return resp, nil
}

// decodeGRPCInfer checks a gRPC inference request like decodeInferRequest
// checks a REST one, and returns the normalised images and whether the
// input came as raw_input_contents.
func decodeGRPCInfer(req *pb.ModelInferRequest, info modelfile.Info, maxImages int) (*v2Input, bool, error) {
	for _, o := range req.GetOutputs() {
		if err := checkOutputName(o.GetName()); err != nil {
			return nil, false, err
		}
	}
	if len(req.GetInputs()) != 1 {
		return nil, false, fmt.Errorf("got %d input tensors, want exactly 1 (%q FP32 [-1,1,28,28] or %q UINT8 [-1,28,28])",
			len(req.GetInputs()), v2InputFP32, v2InputUINT8)
	}
	in := req.GetInputs()[0]
	n, err := imagesInShape(in.GetShape())
	if err != nil {
		return nil, false, fmt.Errorf("input %q: %w", in.GetName(), err)
	}
	if n > maxImages {
		return nil, false, fmt.Errorf("input %q: %d images, at most %d per request", in.GetName(), n, maxImages)
	}
	want := n * modelfile.Pixels
	out := &v2Input{id: req.GetId(), n: n, x: make([]float32, want)}
	rawIn := req.GetRawInputContents()
	raw := len(rawIn) > 0
	c := in.GetContents()
	if raw {
		if len(rawIn) != 1 {
			return nil, false, fmt.Errorf("%d raw_input_contents for 1 input", len(rawIn))
		}
		if c != nil {
			return nil, false, fmt.Errorf("input %q: has both contents and raw_input_contents", in.GetName())
		}
	}
	if c != nil && (len(c.BoolContents)+len(c.IntContents)+len(c.Int64Contents)+len(c.Uint64Contents)+len(c.Fp64Contents)+len(c.BytesContents) > 0) {
		return nil, false, fmt.Errorf("input %q: contents of a type other than %s", in.GetName(), in.GetDatatype())
	}
	switch in.GetDatatype() {
	case "FP32":
		if raw {
			if err := decodeFP32LE(out.x, rawIn[0]); err != nil {
				return nil, false, fmt.Errorf("input %q: %w for shape %v", in.GetName(), err, in.GetShape())
			}
			return out, true, nil
		}
		v := c.GetFp32Contents()
		if len(v) != want || len(c.GetUintContents()) > 0 {
			return nil, false, fmt.Errorf("input %q: %d fp32_contents, want %d for shape %v", in.GetName(), len(v), want, in.GetShape())
		}
		for i, f := range v {
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return nil, false, fmt.Errorf("input %q: value %d is %v, want a finite number", in.GetName(), i, f)
			}
		}
		copy(out.x, v)
		return out, false, nil
	case "UINT8":
		var pix []uint8
		if raw {
			if len(rawIn[0]) != want {
				return nil, false, fmt.Errorf("input %q: %d bytes of UINT8 raw contents, want %d for shape %v", in.GetName(), len(rawIn[0]), want, in.GetShape())
			}
			pix = rawIn[0]
		} else {
			v := c.GetUintContents()
			if len(v) != want || len(c.GetFp32Contents()) > 0 {
				return nil, false, fmt.Errorf("input %q: %d uint_contents, want %d for shape %v", in.GetName(), len(v), want, in.GetShape())
			}
			pix = make([]uint8, want)
			for i, p := range v {
				if p > 255 {
					return nil, false, fmt.Errorf("input %q: value %d is %d, want 0 to 255", in.GetName(), i, p)
				}
				pix[i] = uint8(p)
			}
		}
		info.Normalize(out.x, pix)
		return out, raw, nil
	}
	return nil, false, fmt.Errorf("input %q: datatype %q is not supported; use FP32 (normalised) or UINT8 (pixels)", in.GetName(), in.GetDatatype())
}

// grpcHealth is the standard gRPC health service: SERVING while the server
// is ready (the default model loaded, not shutting down), for the empty
// service name and the inference service's.
type grpcHealth struct {
	grpc_health_v1.UnimplementedHealthServer
	s *Server
}

func (h *grpcHealth) Check(ctx context.Context, req *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	switch strings.TrimSpace(req.GetService()) {
	case "", "inference.GRPCInferenceService":
	default:
		return nil, status.Errorf(codes.NotFound, "unknown service %q", req.GetService())
	}
	st := grpc_health_v1.HealthCheckResponse_NOT_SERVING
	if h.s.isReady() {
		st = grpc_health_v1.HealthCheckResponse_SERVING
	}
	return &grpc_health_v1.HealthCheckResponse{Status: st}, nil
}
