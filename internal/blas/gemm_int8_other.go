//go:build !amd64

package blas

// defaultInt8Kernel is the int8 kernel on this architecture: the portable
// one.
var defaultInt8Kernel = &int8GoKernel

// int8Kernels lists the int8 kernels this machine can run.
func int8Kernels() []*int8Kernel { return []*int8Kernel{&int8GoKernel} }
