package k8s

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// servePort is the port "fashion serve" listens on by default and the image
// EXPOSEs.
const servePort = 8080

// manifests holds every object found in the directory, by kind.
type manifests struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  []*corev1.ConfigMap
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	pdbs        []*policyv1.PodDisruptionBudget
	ingresses   []*networkingv1.Ingress
	pvcs        []*corev1.PersistentVolumeClaim
	pods        []*corev1.Pod
}

// decodeDocument decodes one YAML document strictly into the k8s.io/api type
// its apiVersion and kind name: unknown or duplicate fields are errors, so a
// typo in a manifest fails here instead of being silently dropped by the API
// server.
func decodeDocument(doc []byte, m *manifests) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return fmt.Errorf("reading apiVersion/kind: %w", err)
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		d := &appsv1.Deployment{}
		m.deployments, obj = append(m.deployments, d), d
	case "v1 Service":
		s := &corev1.Service{}
		m.services, obj = append(m.services, s), s
	case "v1 ConfigMap":
		c := &corev1.ConfigMap{}
		m.configMaps, obj = append(m.configMaps, c), c
	case "autoscaling/v2 HorizontalPodAutoscaler":
		h := &autoscalingv2.HorizontalPodAutoscaler{}
		m.hpas, obj = append(m.hpas, h), h
	case "policy/v1 PodDisruptionBudget":
		p := &policyv1.PodDisruptionBudget{}
		m.pdbs, obj = append(m.pdbs, p), p
	case "v1 PersistentVolumeClaim":
		c := &corev1.PersistentVolumeClaim{}
		m.pvcs, obj = append(m.pvcs, c), c
	case "v1 Pod":
		p := &corev1.Pod{}
		m.pods, obj = append(m.pods, p), p
	case "networking.k8s.io/v1 Ingress":
		i := &networkingv1.Ingress{}
		m.ingresses, obj = append(m.ingresses, i), i
	default:
		return fmt.Errorf("apiVersion %q kind %q is not a type this test knows; add it to decodeDocument", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return nil
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// loadManifests decodes every document of every .yaml file in dir.
func loadManifests(t *testing.T, dir string) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no .yaml manifests in %s", dir)
	}
	m := &manifests{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSeparator.Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			if err := decodeDocument([]byte(doc), m); err != nil {
				t.Errorf("%s document %d: %v", filepath.Base(f), i+1, err)
			}
		}
	}
	return m
}

// stripComments drops whole-line YAML comments, to recognise empty documents.
func stripComments(doc string) string {
	var b strings.Builder
	for l := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
		}
	}
	return b.String()
}

func TestDecodeDocumentStrict(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{name: "valid service", doc: "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80}]}\n"},
		{name: "unknown field", doc: "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {prots: []}\n", wantErr: "unknown field"},
		{name: "misplaced field", doc: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: a, readOnlyRootFilesystem: true}]}}}\n", wantErr: "unknown field"},
		{name: "duplicate field", doc: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {A: '1'}\ndata: {B: '2'}\n", wantErr: "already set"},
		{name: "wrong type", doc: "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: eighty}]}\n", wantErr: "port"},
		{name: "unknown kind", doc: "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\n", wantErr: "not a type this test knows"},
		{name: "old API version", doc: "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\n", wantErr: "not a type this test knows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decodeDocument([]byte(tt.doc), &manifests{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("decodeDocument() error = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("decodeDocument() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestManifests(t *testing.T) {
	m := loadManifests(t, ".")
	for _, c := range []struct {
		kind string
		n    int
	}{
		{"Deployment", len(m.deployments)}, {"Service", len(m.services)}, {"ConfigMap", len(m.configMaps)},
		{"HorizontalPodAutoscaler", len(m.hpas)}, {"PodDisruptionBudget", len(m.pdbs)}, {"Ingress", len(m.ingresses)},
	} {
		if c.n != 1 {
			t.Fatalf("found %d %s manifests, want exactly 1", c.n, c.kind)
		}
	}
	dep, svc, cm := m.deployments[0], m.services[0], m.configMaps[0]
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("pod has %d containers, want 1", len(pod.Containers))
	}
	ctr := pod.Containers[0]

	t.Run("selector matches pod labels", func(t *testing.T) {
		sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		podLabels := labels.Set(dep.Spec.Template.Labels)
		if !sel.Matches(podLabels) {
			t.Errorf("Deployment selector %v does not match its pod labels %v", sel, podLabels)
		}
		for name, s := range map[string]map[string]string{"Service": svc.Spec.Selector} {
			for k, v := range s {
				if podLabels[k] != v {
					t.Errorf("%s selector %s=%s does not match pod labels %v", name, k, v, podLabels)
				}
			}
		}
		pdbSel, err := metav1.LabelSelectorAsSelector(m.pdbs[0].Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		if !pdbSel.Matches(podLabels) {
			t.Errorf("PodDisruptionBudget selector %v does not match pod labels", pdbSel)
		}
	})

	t.Run("ports", func(t *testing.T) {
		if len(ctr.Ports) != 1 || ctr.Ports[0].ContainerPort != servePort || ctr.Ports[0].Name != "http" {
			t.Fatalf("container ports %+v, want one named http on %d", ctr.Ports, servePort)
		}
		for _, p := range svc.Spec.Ports {
			if got := resolvePort(t, p.TargetPort, ctr); got != servePort {
				t.Errorf("Service port %d targets container port %d, want %d", p.Port, got, servePort)
			}
		}
		for _, r := range m.ingresses[0].Spec.Rules {
			for _, p := range r.HTTP.Paths {
				b := p.Backend.Service
				if b == nil || b.Name != svc.Name {
					t.Errorf("Ingress path %s backend %+v, want Service %s", p.Path, b, svc.Name)
					continue
				}
				if !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
					return sp.Name == b.Port.Name && b.Port.Name != "" || sp.Port == b.Port.Number && b.Port.Number != 0
				}) {
					t.Errorf("Ingress backend port %+v is not a port of Service %s", b.Port, svc.Name)
				}
			}
		}
		if h := m.hpas[0].Spec.ScaleTargetRef; h.Kind != "Deployment" || h.Name != dep.Name || h.APIVersion != "apps/v1" {
			t.Errorf("HPA targets %+v, want Deployment %s", h, dep.Name)
		}
	})

	t.Run("probes hit real routes", func(t *testing.T) {
		routes := serverRoutes(t)
		probes := []struct {
			name string
			p    *corev1.Probe
			want string
		}{
			{"readiness", ctr.ReadinessProbe, "/readyz"},
			{"liveness", ctr.LivenessProbe, "/healthz"},
			{"startup", ctr.StartupProbe, ""},
		}
		for _, pr := range probes {
			if pr.p == nil {
				if pr.want != "" {
					t.Errorf("%s probe missing", pr.name)
				}
				continue
			}
			g := pr.p.HTTPGet
			if g == nil {
				t.Errorf("%s probe is not an HTTP GET", pr.name)
				continue
			}
			if pr.want != "" && g.Path != pr.want {
				t.Errorf("%s probe path %q, want %q", pr.name, g.Path, pr.want)
			}
			if !slices.Contains(routes, "GET "+g.Path) {
				t.Errorf("%s probe path %q is not a GET route of internal/server's route table %q", pr.name, g.Path, routes)
			}
			if got := resolvePort(t, g.Port, ctr); got != servePort {
				t.Errorf("%s probe port %d, want %d", pr.name, got, servePort)
			}
		}
	})

	t.Run("non-root and read-only", func(t *testing.T) {
		psc, sc := pod.SecurityContext, ctr.SecurityContext
		if psc == nil || sc == nil {
			t.Fatal("pod and container need a securityContext")
		}
		if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Error("runAsNonRoot must be true on pod and container")
		}
		if psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("pod runAsUser %v, want the image's non-root uid", psc.RunAsUser)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("readOnlyRootFilesystem must be true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation must be false")
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("capabilities %+v, want drop [ALL] and no add", sc.Capabilities)
		}
		if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("pod seccompProfile %+v, want RuntimeDefault", psc.SeccompProfile)
		}
	})

	t.Run("resources", func(t *testing.T) {
		req, lim := ctr.Resources.Requests, ctr.Resources.Limits
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := req[r]; !ok {
				t.Errorf("no %s request (the HPA needs the CPU request)", r)
			}
		}
		mem, ok := lim[corev1.ResourceMemory]
		if !ok {
			t.Fatal("no memory limit")
		}
		if mem.Cmp(req[corev1.ResourceMemory]) < 0 {
			t.Errorf("memory limit %s below request %s", mem.String(), req.Memory().String())
		}
		// The service targets < 100 MB RSS (docs/BENCHMARKS.md); the limit
		// must leave room above that.
		if mem.Value() < 100<<20 {
			t.Errorf("memory limit %s is below the ~100 MB the service needs", mem.String())
		}
	})

	t.Run("graceful drain", func(t *testing.T) {
		pre := ctr.Lifecycle
		if pre == nil || pre.PreStop == nil || pre.PreStop.Sleep == nil {
			t.Fatal("preStop must use the sleep action: the scratch image has no sleep binary for exec")
		}
		if pre.PreStop.Exec != nil {
			t.Error("preStop exec cannot run in a scratch image")
		}
		shutdown, err := time.ParseDuration(flagValue(ctr.Args, "shutdown-timeout", "30s"))
		if err != nil {
			t.Fatal(err)
		}
		need := time.Duration(pre.PreStop.Sleep.Seconds)*time.Second + shutdown
		if pod.TerminationGracePeriodSeconds == nil {
			t.Fatal("terminationGracePeriodSeconds unset")
		}
		if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace <= need {
			t.Errorf("terminationGracePeriodSeconds %v must exceed preStop sleep + -shutdown-timeout = %v", grace, need)
		}
	})

	t.Run("args are real serve flags with valid values", func(t *testing.T) {
		flags := serveFlags(t)
		env := map[string]string{}
		for _, e := range ctr.Env {
			switch {
			case e.ValueFrom == nil:
				env[e.Name] = e.Value
			case e.ValueFrom.ConfigMapKeyRef != nil:
				ref := e.ValueFrom.ConfigMapKeyRef
				if ref.Name != cm.Name {
					t.Errorf("env %s refers to ConfigMap %q, want %q", e.Name, ref.Name, cm.Name)
					continue
				}
				v, ok := cm.Data[ref.Key]
				if !ok {
					t.Errorf("env %s refers to key %q missing from ConfigMap %s", e.Name, ref.Key, cm.Name)
				}
				env[e.Name] = v
			}
		}
		for _, a := range ctr.Args {
			name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !strings.HasPrefix(a, "-") || !ok {
				t.Errorf("arg %q: write flags as -name=value so each is one list item", a)
				continue
			}
			kind, known := flags[name]
			if !known {
				t.Errorf("arg %q: fashion serve has no -%s flag (its flags: %v)", a, name, mapKeys(flags))
				continue
			}
			value = expandEnv(t, value, env)
			if err := checkFlagValue(kind, value); err != nil {
				t.Errorf("arg %q (= %q): %v", a, value, err)
			}
		}
		for k := range cm.Data {
			if !slices.ContainsFunc(ctr.Env, func(e corev1.EnvVar) bool {
				return e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil && e.ValueFrom.ConfigMapKeyRef.Key == k
			}) {
				t.Errorf("ConfigMap key %s is not used by the container", k)
			}
		}
	})
}

// resolvePort returns the container port number p names.
func resolvePort(t *testing.T, p intstr.IntOrString, c corev1.Container) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Errorf("port name %q is not a port of container %s", p.StrVal, c.Name)
	return 0
}

// flagValue returns the value of -name=value in args, or def.
func flagValue(args []string, name, def string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v
		}
	}
	return def
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandEnv substitutes $(VAR) as the kubelet does; a reference to a
// variable the container does not define is an error, since the kubelet
// would pass it through literally.
func expandEnv(t *testing.T, s string, env map[string]string) string {
	t.Helper()
	return envRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		v, ok := env[name]
		if !ok {
			t.Errorf("%s is not an env var of the container", ref)
		}
		return v
	})
}

// checkFlagValue parses value as the flag package would for a flag defined
// with the FlagSet method kind.
func checkFlagValue(kind, value string) error {
	var err error
	switch strings.TrimSuffix(kind, "Var") {
	case "Duration":
		_, err = time.ParseDuration(value)
	case "Int", "Int64":
		_, err = strconv.ParseInt(value, 0, 64)
	case "Uint", "Uint64":
		_, err = strconv.ParseUint(value, 0, 64)
	case "Bool":
		_, err = strconv.ParseBool(value)
	case "Float64":
		_, err = strconv.ParseFloat(value, 64)
	default: // String, Var, Func, TextVar: any text, but not nothing
		if value == "" {
			err = fmt.Errorf("empty value")
		}
	}
	return err
}

// serveFlags returns the flags "fashion serve" defines, mapped to the
// FlagSet method that defines them, read from cmd/fashion/serve.go's source
// because package main cannot be imported.
func serveFlags(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../../cmd/fashion/serve.go", nil, 0)
	if err != nil {
		t.Fatalf("parsing the serve command: %v", err)
	}
	// Position of the flag name among each definer's arguments.
	nameArg := map[string]int{
		"String": 0, "Int": 0, "Int64": 0, "Uint": 0, "Uint64": 0, "Bool": 0, "Duration": 0, "Float64": 0, "Func": 0, "BoolFunc": 0,
		"StringVar": 1, "IntVar": 1, "Int64Var": 1, "UintVar": 1, "Uint64Var": 1, "BoolVar": 1, "DurationVar": 1, "Float64Var": 1, "Var": 1, "TextVar": 1,
	}
	flags := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		i, ok := nameArg[sel.Sel.Name]
		if !ok || len(call.Args) <= i {
			return true
		}
		if lit, ok := call.Args[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if name, err := strconv.Unquote(lit.Value); err == nil {
				flags[name] = sel.Sel.Name
			}
		}
		return true
	})
	if _, ok := flags["addr"]; !ok {
		t.Fatalf("found no -addr flag in cmd/fashion/serve.go (found %v); update serveFlags if flags moved", mapKeys(flags))
	}
	return flags
}

// serverRoutes returns the patterns of internal/server's route table (the
// string literals of its routeTable method), read from source because the
// table is unexported.
func serverRoutes(t *testing.T) []string {
	t.Helper()
	pkgs, err := filepath.Glob("../../internal/server/*.go")
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	fset := token.NewFileSet()
	for _, p := range pkgs {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatalf("parsing %s: %v", p, err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Name.Name != "routeTable" || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && strings.Contains(s, " /") {
						routes = append(routes, s)
					}
				}
				return true
			})
		}
	}
	if len(routes) == 0 {
		t.Fatal("found no routeTable in internal/server; update serverRoutes if the route table moved")
	}
	return routes
}

func mapKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestModelVolumeManifests checks the recipe for serving a model from a
// volume (deploy/k8s/model): the loader pod mounts the claim writable as
// the service's user and group with that fsGroup, and carries the tar that
// kubectl cp needs; the Deployment's pods have the same fsGroup.
func TestModelVolumeManifests(t *testing.T) {
	m := loadManifests(t, "model")
	if len(m.pvcs) != 1 || len(m.pods) != 1 {
		t.Fatalf("deploy/k8s/model holds %d claims and %d pods, want 1 and 1", len(m.pvcs), len(m.pods))
	}
	pvc, pod := m.pvcs[0], m.pods[0]
	sc := pod.Spec.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 || sc.FSGroup == nil || *sc.FSGroup != 65532 {
		t.Errorf("loader pod security context %+v, want uid 65532 and fsGroup 65532", sc)
	}
	if len(pod.Spec.Volumes) != 1 || pod.Spec.Volumes[0].PersistentVolumeClaim == nil ||
		pod.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != pvc.Name || pod.Spec.Volumes[0].PersistentVolumeClaim.ReadOnly {
		t.Errorf("loader pod volumes %+v, want claim %s writable", pod.Spec.Volumes, pvc.Name)
	}
	if c := pod.Spec.Containers; len(c) != 1 || !strings.HasPrefix(c[0].Image, "busybox:") || len(c[0].VolumeMounts) != 1 || c[0].VolumeMounts[0].MountPath != "/models" {
		t.Errorf("loader container %+v, want busybox mounting /models", c)
	}
	dep := loadManifests(t, ".").deployments[0]
	if fs := dep.Spec.Template.Spec.SecurityContext.FSGroup; fs == nil || *fs != 65532 {
		t.Errorf("Deployment fsGroup %v, want 65532 so a mounted model is readable", fs)
	}
	doc, err := os.ReadFile("../../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"claimName: " + pvc.Name, "kubectl apply -f deploy/k8s/model/pvc.yaml", "kubectl cp model.safetensors " + pod.Name + ":/models/model.safetensors"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/kubernetes.md does not say %q", want)
		}
	}
}
