// Package pb holds the Go code generated from the Open Inference Protocol's
// gRPC service definition, open_inference_grpc.proto: the messages and the
// inference.GRPCInferenceService client and server stubs.
//
// open_inference_grpc.proto is copied unchanged from the KServe project's
// specification repository (specification/protocol/, commit
// d49cc23f89d709d87b210ef9449e273ae243984e, May 2025), Apache License 2.0
// (see its header). It declares no go_package, so the M option below gives
// its Go import path. Regenerate with protoc (Debian's protobuf-compiler),
// protoc-gen-go and protoc-gen-go-grpc (go install
// google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
// google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2):
//
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go_opt=Mopen_inference_grpc.proto=github.com/fashion-classifier/fashion/internal/oipgrpc/pb --go-grpc_out=. --go-grpc_opt=paths=source_relative --go-grpc_opt=Mopen_inference_grpc.proto=github.com/fashion-classifier/fashion/internal/oipgrpc/pb open_inference_grpc.proto
package pb
