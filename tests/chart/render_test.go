package chart

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart under test, from this package's directory.
var chartDir = filepath.Join("..", "..", "charts", "herald")

// kubeVersion is the Kubernetes version the chart is rendered and linted
// for; Helm's own default is far older than the chart's kubeVersion.
const kubeVersion = "v1.34.0"

const (
	releaseName = "herald"
	namespace   = "messaging"
)

// manifest is one rendered document: where it came from and what it decoded
// into (a typed Kubernetes object, or a *serviceMonitor).
type manifest struct {
	source string
	kind   string
	name   string
	obj    any
}

// rendering is every manifest of one helm template run, by kind and name.
type rendering struct {
	manifests []manifest
	notes     string
}

func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return c
}

// serviceMonitorAPI is the API version the Prometheus Operator's CRDs add:
// the renderings below are for a cluster that has them, as `helm template
// --api-versions` would say, unless a test says otherwise.
const serviceMonitorAPI = "monitoring.coreos.com/v1/ServiceMonitor"

func capabilities(t testing.TB, apiVersions ...string) *chartutil.Capabilities {
	t.Helper()
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	caps.APIVersions = append(caps.APIVersions, apiVersions...)
	return caps
}

// userValues reads a values file (if any) and sets overrides on top, as
// `helm template -f file --set-json ...` would.
func userValues(t testing.TB, file string, overrides map[string]any) map[string]any {
	t.Helper()
	vals := map[string]any{}
	if file != "" {
		v, err := chartutil.ReadValuesFile(file)
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		vals = v.AsMap()
	}
	for path, v := range overrides {
		setPath(vals, strings.Split(path, "."), v)
	}
	return vals
}

func setPath(m map[string]any, path []string, v any) {
	for _, key := range path[:len(path)-1] {
		next, ok := m[key].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[key] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// cluster is what a rendering sees of the cluster: the API versions it
// serves and the objects lookup finds (none: helm template, or a first
// install).
type cluster struct {
	apiVersions []string
	live        []runtime.Object
}

// withPrometheusOperator is a cluster with the ServiceMonitor CRD.
var withPrometheusOperator = cluster{apiVersions: []string{serviceMonitorAPI}}

// renderValues renders the chart as helm template does, schema validation
// included, and returns the documents by file, for a cluster with the
// Prometheus Operator's CRDs and no objects.
func renderValues(t testing.TB, c *chart.Chart, vals map[string]any) (map[string]string, error) {
	t.Helper()
	return renderIn(t, withPrometheusOperator, c, vals)
}

// renderIn renders as helm install or upgrade does against cl: the
// capabilities it serves, and its objects for lookup.
func renderIn(t testing.TB, cl cluster, c *chart.Chart, vals map[string]any) (map[string]string, error) {
	t.Helper()
	opts := chartutil.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	rv, err := chartutil.ToRenderValues(c, vals, opts, capabilities(t, cl.apiVersions...))
	if err != nil {
		return nil, err
	}
	return engine.RenderWithClientProvider(c, rv, objects(cl.live))
}

// objects answers the chart's lookup calls from a fixed set of objects.
type objects []runtime.Object

func (o objects) GetClientFor(apiVersion, kind string) (dynamic.NamespaceableResourceInterface, bool, error) {
	gvk := schema.FromAPIVersionAndKind(apiVersion, kind)
	gvr, _ := meta.UnsafeGuessKindToResource(gvk)
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme.Scheme,
		map[schema.GroupVersionResource]string{gvr: kind + "List"}, o...)
	return client.Resource(gvr), true, nil
}

// render renders and strictly decodes every manifest; any failure fails t.
func render(t testing.TB, file string, overrides map[string]any) rendering {
	t.Helper()
	return renderObjects(t, withPrometheusOperator, file, overrides)
}

// renderObjects is render against cl.
func renderObjects(t testing.TB, cl cluster, file string, overrides map[string]any) rendering {
	t.Helper()
	c := loadChart(t)
	files, err := renderIn(t, cl, c, userValues(t, file, overrides))
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	var r rendering
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		content := files[name]
		if strings.HasSuffix(name, "NOTES.txt") {
			r.notes = content
			continue
		}
		if strings.HasPrefix(filepath.Base(name), "_") {
			continue
		}
		for _, doc := range releaseutil.SplitManifests(content) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			m, err := decodeStrict(name, []byte(doc))
			if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			r.manifests = append(r.manifests, m)
		}
	}
	if len(r.manifests) == 0 {
		t.Fatal("the chart rendered no manifest")
	}
	return r
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// strictDecoder refuses unknown and duplicate fields and wrong types.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// decodeStrict decodes one document into its Kubernetes API type, or a
// ServiceMonitor (not in client-go's scheme) into serviceMonitor.
func decodeStrict(source string, doc []byte) (manifest, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return manifest{}, err
	}
	if tm.APIVersion == "monitoring.coreos.com/v1" && tm.Kind == "ServiceMonitor" {
		sm, err := decodeServiceMonitor(doc)
		if err != nil {
			return manifest{}, err
		}
		return manifest{source: source, kind: tm.Kind, name: sm.Metadata.Name, obj: sm}, nil
	}
	obj, gvk, err := strictDecoder.Decode(doc, nil, nil)
	if err != nil {
		return manifest{}, err
	}
	if obj == nil || gvk == nil {
		return manifest{}, fmt.Errorf("nothing decoded")
	}
	if _, ok := obj.(*runtime.Unknown); ok {
		return manifest{}, fmt.Errorf("%s is not a known Kubernetes type", gvk)
	}
	acc, err := metaName(obj)
	if err != nil {
		return manifest{}, err
	}
	return manifest{source: source, kind: gvk.Kind, name: acc, obj: obj}, nil
}

func metaName(obj runtime.Object) (string, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return "", fmt.Errorf("%T has no object metadata", obj)
	}
	if m.GetName() == "" {
		return "", fmt.Errorf("%T has no name", obj)
	}
	return m.GetName(), nil
}

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// (monitoring.coreos.com/v1) the chart may use: a field outside it fails
// decoding, as an unknown field of a built-in type does.
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func decodeServiceMonitor(doc []byte) (*serviceMonitor, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var sm serviceMonitor
	if err := dec.Decode(&sm); err != nil {
		return nil, fmt.Errorf("ServiceMonitor: %w", err)
	}
	if sm.Metadata.Name == "" || len(sm.Spec.Endpoints) == 0 {
		return nil, fmt.Errorf("ServiceMonitor without name or endpoints")
	}
	return &sm, nil
}

// find returns the manifest of that kind and name, failing t if missing.
func (r rendering) find(t testing.TB, kind, name string) any {
	t.Helper()
	for _, m := range r.manifests {
		if m.kind == kind && m.name == name {
			return m.obj
		}
	}
	t.Fatalf("no %s %q among %v", kind, name, r.names())
	return nil
}

func (r rendering) has(kind, name string) bool {
	for _, m := range r.manifests {
		if m.kind == kind && m.name == name {
			return true
		}
	}
	return false
}

func (r rendering) names() []string {
	var out []string
	for _, m := range r.manifests {
		out = append(out, m.kind+"/"+m.name)
	}
	return out
}

func (r rendering) deployment(t testing.TB, component string) *appsv1.Deployment {
	t.Helper()
	return r.find(t, "Deployment", releaseName+"-"+component).(*appsv1.Deployment)
}

// pods returns every pod template and pod the chart renders, by name.
func (r rendering) pods() map[string]corev1.PodSpec {
	out := map[string]corev1.PodSpec{}
	for _, m := range r.manifests {
		switch o := m.obj.(type) {
		case *appsv1.Deployment:
			out[m.kind+"/"+m.name] = o.Spec.Template.Spec
		case *corev1.Pod:
			out[m.kind+"/"+m.name] = o.Spec
		}
	}
	return out
}
