// Package k8s holds the Kubernetes manifests of the fashion classification
// service (apply them with "kubectl apply -f deploy/k8s/"). It has no code:
// its tests decode every manifest strictly into the k8s.io/api types and
// check it against the server's real routes and flags. See
// docs/kubernetes.md.
package k8s
