// Package cputime reads the CPU time a process has used, summed over its
// threads. Benchmarks report it beside wall-clock time because on a shared
// machine CPU time per operation is what stays comparable between runs.
package cputime
