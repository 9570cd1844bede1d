package kserve

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	v1beta1 "github.com/kserve/kserve/pkg/apis/serving/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// decode reads inferenceservice.yaml strictly into KServe's
// InferenceService type: an unknown or misspelt field is an error, not a
// field the API server would silently drop.
func decode(t *testing.T) *v1beta1.InferenceService {
	t.Helper()
	data, err := os.ReadFile("inferenceservice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var isvc v1beta1.InferenceService
	if err := yaml.UnmarshalStrict(data, &isvc); err != nil {
		t.Fatalf("inferenceservice.yaml does not decode strictly into v1beta1.InferenceService: %v", err)
	}
	return &isvc
}

func TestDecodeIsStrict(t *testing.T) {
	bad := []byte("apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: x}\nspec:\n  predictor:\n    minReplica: 1\n")
	var isvc v1beta1.InferenceService
	if err := yaml.UnmarshalStrict(bad, &isvc); err == nil {
		t.Fatal("a misspelt field (minReplica) decoded without error")
	}
}

// serveFlagNames returns every string literal of cmd/fashion's Go files
// that could be a flag name, a superset of serve's flags.
func serveFlagNames(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "cmd", "fashion", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("cmd/fashion sources: %v", err)
	}
	lit := regexp.MustCompile(`"([a-z][a-z0-9-]*)"`)
	names := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range lit.FindAllSubmatch(src, -1) {
			names[string(m[1])] = true
		}
	}
	return names
}

func TestInferenceService(t *testing.T) {
	isvc := decode(t)
	if isvc.APIVersion != "serving.kserve.io/v1beta1" || isvc.Kind != "InferenceService" || isvc.Name == "" {
		t.Fatalf("apiVersion %q kind %q name %q", isvc.APIVersion, isvc.Kind, isvc.Name)
	}
	if mode := isvc.Annotations["serving.kserve.io/deploymentMode"]; mode != "RawDeployment" {
		t.Errorf("deploymentMode %q: two ports (REST and gRPC) need RawDeployment", mode)
	}
	p := isvc.Spec.Predictor
	if p.MinReplicas == nil || *p.MinReplicas < 1 || p.MaxReplicas < *p.MinReplicas {
		t.Errorf("replicas: min %v max %d", p.MinReplicas, p.MaxReplicas)
	}
	if len(p.Containers) != 1 {
		t.Fatalf("%d containers, want our one custom predictor", len(p.Containers))
	}
	c := p.Containers[0]
	if c.Name != "kserve-container" {
		t.Errorf("container name %q: KServe expects kserve-container for a custom predictor", c.Name)
	}

	// Every argument is a real flag of fashion serve.
	flags := serveFlagNames(t)
	args := map[string]string{}
	for _, a := range c.Args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		if !ok || !strings.HasPrefix(a, "-") {
			t.Errorf("argument %q: want -flag=value", a)
			continue
		}
		if !flags[name] {
			t.Errorf("argument %q: fashion serve has no flag -%s", a, name)
		}
		args[name] = value
	}
	if args["addr"] != ":8080" || args["grpc-addr"] != ":8081" || args["model-repository"] != "/mnt/models" {
		t.Errorf("args %v: want -addr=:8080 -grpc-addr=:8081 -model-repository=/mnt/models", args)
	}

	// Ports: REST as http1, gRPC as h2c, KServe's names.
	ports := map[string]int32{}
	for _, cp := range c.Ports {
		ports[cp.Name] = cp.ContainerPort
	}
	if ports["http1"] != 8080 || ports["h2c"] != 8081 {
		t.Errorf("ports %v: want http1 8080 and h2c 8081", ports)
	}

	// The model comes in our repository layout from STORAGE_URI, which
	// KServe's storage initializer mounts at /mnt/models.
	var storage string
	for _, e := range c.Env {
		if e.Name == "STORAGE_URI" {
			storage = e.Value
		}
	}
	if !slices.ContainsFunc([]string{"pvc://", "gs://", "s3://", "https://"}, func(s string) bool { return strings.HasPrefix(storage, s) }) {
		t.Errorf("STORAGE_URI %q: want pvc://, gs://, s3:// or https://", storage)
	}

	// Probes use the protocol's health endpoints on the REST port.
	probe := func(name string, pr *corev1.Probe, path string) {
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("%s probe missing", name)
			return
		}
		if pr.HTTPGet.Path != path || pr.HTTPGet.Port.IntValue() != 8080 {
			t.Errorf("%s probe %s:%s, want %s on 8080", name, pr.HTTPGet.Path, pr.HTTPGet.Port.String(), path)
		}
	}
	probe("readiness", c.ReadinessProbe, "/v2/health/ready")
	probe("liveness", c.LivenessProbe, "/v2/health/live")
	probe("startup", c.StartupProbe, "/v2/health/live")

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %v limit %v", r, req.String(), lim.String())
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container must run with a read-only root filesystem and no privilege escalation")
	}
	if p.TerminationGracePeriodSeconds == nil || *p.TerminationGracePeriodSeconds <= 30 {
		t.Errorf("terminationGracePeriodSeconds %v must exceed -shutdown-timeout=30s", p.TerminationGracePeriodSeconds)
	}
}
