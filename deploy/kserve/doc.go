// Package kserve holds the KServe manifest of the fashion classification
// service, inferenceservice.yaml (apply it with "kubectl apply -f
// deploy/kserve/"). It has no code: its test decodes the manifest strictly
// into KServe's own Go API types and checks it against the server's flags
// and probes. See docs/kubernetes.md.
//
// It is a module of its own because github.com/kserve/kserve v0.15.2 brings
// about a hundred modules (controller-runtime, Knative, client-go) pinned to
// Kubernetes 0.32 libraries, which do not build beside the main module's
// k8s.io/api v0.37; keeping them here leaves the main module's dependency
// tree as it was. .ci/run tests it with "cd deploy/kserve && go test ./...".
package kserve
