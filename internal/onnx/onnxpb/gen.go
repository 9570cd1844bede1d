// Package onnxpb holds the Go types of the ONNX protobuf schema, generated
// from onnx.proto (ONNX 1.12, Apache-2.0, shipped by Debian's libonnx-dev as
// /usr/include/onnx/onnx.proto) with protoc-gen-go. The generated file is
// committed, so building the module needs no protobuf compiler; the
// directive below regenerates it after the schema changes.
package onnxpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative onnx.proto
