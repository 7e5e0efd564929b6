package test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest.
type object struct {
	source string
	gvk    schema.GroupVersionKind
	name   string
	ns     string
	// typed is a k8s.io/api type, or *unstructured.Unstructured for the two
	// custom kinds checked by customKinds.
	typed runtime.Object
}

// customKind describes a kind outside k8s.io/api that the charts render: its
// only accepted apiVersion and the keys its spec may hold (each with a check
// of the value's type). Everything else about it is an error, as for the
// built-in kinds.
type customKind struct {
	apiVersion string
	required   []string
	spec       map[string]func(any) bool
}

func isInt(v any) bool {
	switch n := v.(type) {
	case int64:
		return true
	case float64:
		return n == float64(int64(n))
	}
	return false
}
func isString(v any) bool { _, ok := v.(string); return ok }
func isMap(v any) bool    { _, ok := v.(map[string]any); return ok }
func isList(v any) bool   { _, ok := v.([]any); return ok }

// customKinds: Strimzi's KafkaTopic and the Prometheus Operator's
// ServiceMonitor (only the fields the charts use).
var customKinds = map[string]customKind{
	"KafkaTopic": {
		apiVersion: "kafka.strimzi.io/v1beta2",
		required:   []string{"topicName", "partitions", "replicas", "config"},
		spec: map[string]func(any) bool{
			"topicName": isString, "partitions": isInt, "replicas": isInt, "config": isMap,
		},
	},
	"ServiceMonitor": {
		apiVersion: "monitoring.coreos.com/v1",
		required:   []string{"selector", "endpoints"},
		spec: map[string]func(any) bool{
			"selector": isMap, "namespaceSelector": isMap, "endpoints": isList, "jobLabel": isString,
		},
	},
}

// strictDecoder decodes into the k8s.io/api types and refuses unknown
// fields, duplicate keys and wrong types.
func strictDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatalf("build scheme: %v", err)
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// decodeAll strictly decodes every rendered manifest; every problem is a
// test error naming the source file.
func decodeAll(t *testing.T, manifests map[string]string) []object {
	t.Helper()
	objs, errs := decodeManifests(strictDecoder(t), manifests)
	for _, err := range errs {
		t.Error(err)
	}
	return objs
}

// decodeManifests strictly decodes manifests in a stable order.
func decodeManifests(dec runtime.Decoder, manifests map[string]string) ([]object, []error) {
	keys := make([]string, 0, len(manifests))
	for k := range manifests {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var objs []object
	var errs []error
	for _, k := range keys {
		doc := manifests[k]
		if strings.TrimSpace(doc) == "" {
			continue
		}
		source := firstLine(doc)
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			errs = append(errs, fmt.Errorf("%s: not YAML: %w", source, err))
			continue
		}
		if ck, ok := customKinds[head.Kind]; ok {
			o, err := decodeCustom(doc, head.Kind, ck)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", source, err))
				continue
			}
			o.source = source
			objs = append(objs, o)
			continue
		}
		typed, gvk, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: strict decode of %s %s: %w", source, head.APIVersion, head.Kind, err))
			continue
		}
		acc, ok := typed.(interface {
			GetName() string
			GetNamespace() string
		})
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s has no object metadata", source, gvk))
			continue
		}
		objs = append(objs, object{source: source, gvk: *gvk, name: acc.GetName(), ns: acc.GetNamespace(), typed: typed})
	}
	return objs, errs
}

func decodeCustom(doc, kind string, ck customKind) (object, error) {
	var u unstructured.Unstructured
	if err := yaml.UnmarshalStrict([]byte(doc), &u.Object); err != nil {
		return object{}, fmt.Errorf("%s: %w", kind, err)
	}
	if got := u.GetAPIVersion(); got != ck.apiVersion {
		return object{}, fmt.Errorf("%s apiVersion %q, want %q", kind, got, ck.apiVersion)
	}
	for k := range u.Object {
		if !slices.Contains([]string{"apiVersion", "kind", "metadata", "spec"}, k) {
			return object{}, fmt.Errorf("%s has unknown top-level field %q", kind, k)
		}
	}
	spec, ok := u.Object["spec"].(map[string]any)
	if !ok {
		return object{}, fmt.Errorf("%s has no spec", kind)
	}
	for k, v := range spec {
		check, known := ck.spec[k]
		if !known {
			return object{}, fmt.Errorf("%s spec has unknown field %q", kind, k)
		}
		if !check(v) {
			return object{}, fmt.Errorf("%s spec.%s has the wrong type (%T)", kind, k, v)
		}
	}
	for _, k := range ck.required {
		if _, ok := spec[k]; !ok {
			return object{}, fmt.Errorf("%s spec.%s is missing", kind, k)
		}
	}
	if u.GetName() == "" {
		return object{}, fmt.Errorf("%s has no metadata.name", kind)
	}
	return object{gvk: u.GroupVersionKind(), name: u.GetName(), ns: u.GetNamespace(), typed: &u}, nil
}

func firstLine(doc string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(doc), "\n")
	return strings.TrimPrefix(line, "# Source: ")
}

// objectsOf returns the decoded objects of one type.
func objectsOf[T runtime.Object](objs []object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.typed.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// customOf returns the custom objects of one kind.
func customOf(objs []object, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if u, ok := o.typed.(*unstructured.Unstructured); ok && u.GetKind() == kind {
			out = append(out, u)
		}
	}
	return out
}

// The strict decoding is what catches a field Kubernetes does not know,
// which helm lint and the values schemas let through (free-form values such
// as extra NetworkPolicy rules and environment variables).
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setJSON string
		want    string
	}{
		{"misspelt NetworkPolicy rule", `intake.networkPolicy.extraIngress=[{"form":[{"ipBlock":{"cidr":"10.0.0.0/8"}}]}]`, `unknown field "spec.ingress[2].form"`},
		{"misspelt env source", `rules.extraEnv=[{"name":"X","valueFrom":{"secretKeyRef":{"name":"s","key":"k"},"secretRef":{}}}]`, `unknown field "spec.template.spec.containers[0].env`},
		{"toleration of the wrong type", `notification.tolerations=[{"key":"zone","tolerationSeconds":"soon"}]`, "tolerationSeconds"},
		{"unknown affinity", `acknowledgement.affinity={"zoneAffinity":{}}`, `unknown field "spec.template.spec.affinity.zoneAffinity"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			manifests := mustRender(t, renderOpts{chart: "herald", setJSON: []string{tc.setJSON}})
			_, errs := decodeManifests(strictDecoder(t), manifests)
			require.Len(t, errs, 1, "one manifest refused")
			require.Contains(t, errs[0].Error(), tc.want)
		})
	}
}
