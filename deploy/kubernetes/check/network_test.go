package check

import (
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Who a NetworkPolicy peer admits, coarsely: all that the check needs to tell
// the one public port from the rest.
const (
	fromAnywhere  = "anywhere"                          // no peers, an ipBlock, or other namespaces
	fromNamespace = "this namespace"                    // a podSelector alone
	fromScraper   = "a named namespace's selected pods" // Prometheus
)

func peerKind(p networkingv1.NetworkPolicyPeer) string {
	switch {
	case p.IPBlock != nil:
		return fromAnywhere
	case p.NamespaceSelector == nil && p.PodSelector != nil:
		return fromNamespace
	case p.NamespaceSelector != nil && p.PodSelector != nil && len(p.PodSelector.MatchLabels)+len(p.PodSelector.MatchExpressions) > 0 &&
		len(p.NamespaceSelector.MatchExpressions) == 0 && len(p.NamespaceSelector.MatchLabels) == 1 &&
		p.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "":
		return fromScraper
	}
	return fromAnywhere
}

// admits is who may connect to port of d's pods under the rendered
// policies, and whether any policy isolates those pods at all.
func (c *checker) admits(d *appsv1.Deployment, port corev1.ContainerPort) (from map[string]bool, isolated bool) {
	from = map[string]bool{}
	pod := labels.Set(d.Spec.Template.Labels)
	for _, np := range c.m.netpols {
		if !selectorOf(&np.Spec.PodSelector).Matches(pod) {
			continue
		}
		// No policyTypes means Ingress (and Egress only with egress rules).
		if len(np.Spec.PolicyTypes) > 0 && !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		isolated = true
		for _, rule := range np.Spec.Ingress {
			if !rulePortMatches(rule.Ports, port) {
				continue
			}
			if len(rule.From) == 0 {
				from[fromAnywhere] = true
			}
			for _, p := range rule.From {
				from[peerKind(p)] = true
			}
		}
	}
	return from, isolated
}

func rulePortMatches(ports []networkingv1.NetworkPolicyPort, port corev1.ContainerPort) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.StrVal != "":
			if p.Port.StrVal == port.Name {
				return true
			}
		default:
			end := p.Port.IntVal
			if p.EndPort != nil {
				end = *p.EndPort
			}
			if port.ContainerPort >= p.Port.IntVal && port.ContainerPort <= end {
				return true
			}
		}
	}
	return false
}

// network: every sluice pod is isolated; only ingest's public port admits
// connections from anywhere; every other port admits this namespace, and
// the port Prometheus is told to scrape admits it.
func (c *checker) network() {
	for _, np := range c.m.netpols {
		c.selector("NetworkPolicy "+np.Name, &np.Spec.PodSelector)
	}
	for _, d := range c.m.deployments {
		scrape := d.Spec.Template.Annotations["prometheus.io/port"]
		for _, port := range d.Spec.Template.Spec.Containers[0].Ports {
			what := "Deployment " + d.Name + ", port " + port.Name
			from, isolated := c.admits(d, port)
			if !isolated {
				c.errorf("Deployment %s: no NetworkPolicy isolates its pods: every port admits everyone", d.Name)
				break
			}
			public := d == c.ingest && port.Name == c.publicPort.Name
			switch {
			case public && !from[fromAnywhere]:
				c.errorf("%s: ingest's public port does not admit publishers from outside the namespace", what)
			case !public && from[fromAnywhere]:
				c.errorf("%s: admits connections from outside the namespace: only ingest's public port may", what)
			case !public && !from[fromNamespace]:
				c.errorf("%s: does not admit this namespace's pods (operators' tools)", what)
			}
			if scrape == strconv.Itoa(int(port.ContainerPort)) && !from[fromScraper] && !from[fromAnywhere] {
				c.errorf("%s: Prometheus scrapes it (prometheus.io/port) but no policy admits a monitoring namespace's pods", what)
			}
		}
	}
}
