package check

import (
	"fmt"
	"path/filepath"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// manifests is what one kustomization renders, decoded into the API types.
type manifests struct {
	dir          string // relative to deploy/kubernetes
	deployments  []*appsv1.Deployment
	services     []*corev1.Service
	configMaps   []*corev1.ConfigMap
	secrets      []*corev1.Secret
	namespaces   []*corev1.Namespace
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	pdbs         []*policyv1.PodDisruptionBudget
	netpols      []*networkingv1.NetworkPolicy
	secretNames  map[string]*corev1.Secret
	configByName map[string]*corev1.ConfigMap
}

// decoder decodes the kinds sluice's manifests may hold, strictly: a field
// the type does not have, or a field given twice, is an error. A kind not
// registered here is an error too: add its group when the manifests need it.
var decoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv2.AddToScheme,
		policyv1.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
}()

// render runs kustomize (the library `kubectl kustomize` is built from, with
// its defaults: no plugins, files only from within the kustomization) on
// root/dir (root: deploy/kubernetes or a copy) and decodes every object it
// renders.
func render(root, dir string) (*manifests, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(root, dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize: %w", err)
	}
	m := &manifests{dir: dir, secretNames: map[string]*corev1.Secret{}, configByName: map[string]*corev1.ConfigMap{}}
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		obj, _, err := decoder.Decode(y, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", r.GetKind(), r.GetName(), err)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployments = append(m.deployments, o)
		case *corev1.Service:
			m.services = append(m.services, o)
		case *corev1.ConfigMap:
			m.configMaps = append(m.configMaps, o)
			m.configByName[o.Name] = o
		case *corev1.Secret:
			m.secrets = append(m.secrets, o)
			m.secretNames[o.Name] = o
		case *corev1.Namespace:
			m.namespaces = append(m.namespaces, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			m.hpas = append(m.hpas, o)
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *networkingv1.NetworkPolicy:
			m.netpols = append(m.netpols, o)
		default:
			return nil, fmt.Errorf("%s %s: a kind this check does not look at: teach it what to check", r.GetKind(), r.GetName())
		}
	}
	return m, nil
}

// objects is every rendered object with its metadata, for the checks that
// apply to all of them.
func (m *manifests) objects() []runtime.Object {
	var out []runtime.Object
	for _, o := range m.deployments {
		out = append(out, o)
	}
	for _, o := range m.services {
		out = append(out, o)
	}
	for _, o := range m.configMaps {
		out = append(out, o)
	}
	for _, o := range m.secrets {
		out = append(out, o)
	}
	for _, o := range m.namespaces {
		out = append(out, o)
	}
	for _, o := range m.hpas {
		out = append(out, o)
	}
	for _, o := range m.pdbs {
		out = append(out, o)
	}
	for _, o := range m.netpols {
		out = append(out, o)
	}
	return out
}
