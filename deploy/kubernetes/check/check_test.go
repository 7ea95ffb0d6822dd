package check

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The metric the HorizontalPodAutoscaler scales ingest on, served by
// prometheus-adapter from sluice_ingest_requests_total (docs/kubernetes.md).
const requestRateMetric = "sluice_ingest_requests_per_second"

// devMarker is in every value of a Secret that kustomize renders: the only
// Secrets this repository may hold are dev placeholders.
const devMarker = "dev-only"

// secretEnv are the variables that carry secrets (SLUICE_INGEST_KEYS,
// SLUICE_ADMIN_TOKEN, the DSNs, …): they come from a Secret, never written
// in a manifest.
var secretEnv = regexp.MustCompile(`^SLUICE_.*_(KEYS?|TOKEN|PASSWORD|SECRET|DSN)$`)

// dirs are the kustomizations: the base and every overlay.
func dirs(t *testing.T) []string {
	overlays, err := filepath.Glob(filepath.Join(kubeDir, "overlays", "*", "kustomization.yaml"))
	if err != nil || len(overlays) == 0 {
		t.Fatalf("no overlays/*/kustomization.yaml under %s (%v)", kubeDir, err)
	}
	out := []string{"base"}
	for _, o := range overlays {
		out = append(out, filepath.Join("overlays", filepath.Base(filepath.Dir(o))))
	}
	return out
}

func TestManifests(t *testing.T) {
	secretKeys := map[string][]string{} // per kustomization, the Secret keys its containers read
	for _, dir := range dirs(t) {
		t.Run(dir, func(t *testing.T) {
			c, err := check(kubeDir, dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range c.errs {
				t.Error(e)
			}
			secretKeys[dir] = sortedKeys(c.secretRefs)
			t.Logf("%d objects; the Secret keys read: %s", len(c.m.objects()), strings.Join(secretKeys[dir], ", "))
		})
	}
	// Every overlay's containers read the Secret keys the base's do: the ones
	// docs/kubernetes.md's `kubectl create secret` gives and the dev placeholders hold
	// (a key missing from a rendered Secret is a finding of its own).
	for dir, keys := range secretKeys {
		if !slices.Equal(keys, secretKeys["base"]) {
			t.Errorf("%s reads the Secret keys %v, the base %v", dir, keys, secretKeys["base"])
		}
	}
}

// check renders root/dir and checks it. It returns an error when the
// kustomization does not render or an object does not decode, and lists
// every other finding.
func check(root, dir string) (*checker, error) {
	m, err := render(root, dir)
	if err != nil {
		return nil, err
	}
	c := &checker{m: m, base: dir == "base", configs: map[string]*configFile{},
		secretRefs: map[string]bool{}, appliers: map[string]string{}}
	c.metadata()
	c.workloads()
	c.secrets()
	c.services()
	c.scaling()
	c.network()
	return c, nil
}

type checker struct {
	m    *manifests
	base bool
	errs []string
	// configs are the configuration files mounted from each ConfigMap.
	configs map[string]*configFile
	// secretRefs are the keys of Secrets that containers read.
	secretRefs map[string]bool
	// ingest is the ingest Deployment and its two ports.
	ingest                *appsv1.Deployment
	publicPort, adminPort corev1.ContainerPort
	// appliers are the applier Deployments by target.
	appliers map[string]string
	// targets are the targets the binary reads from the configuration.
	targets []string
}

func (c *checker) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Sprintf(format, args...))
}

func (c *checker) fieldErrors(what string, errs field.ErrorList) {
	for _, e := range errs {
		c.errorf("%s: %v", what, e)
	}
}

func kind(o runtime.Object) string { return reflect.TypeOf(o).Elem().Name() }

// metadata: names, namespaces and labels as the API server validates them.
// The base names no namespace; an overlay puts every object in one.
func (c *checker) metadata() {
	namespaces := map[string]bool{}
	for _, o := range c.m.objects() {
		meta := o.(metav1.Object)
		name := apivalidation.NameIsDNSSubdomain
		if kind(o) == "Service" {
			name = apivalidation.NameIsDNS1035Label
		}
		namespaced := kind(o) != "Namespace" && !c.base
		what := kind(o) + " " + meta.GetName()
		c.fieldErrors(what, apivalidation.ValidateObjectMetaAccessor(meta, namespaced, name, field.NewPath("metadata")))
		if namespaced {
			namespaces[meta.GetNamespace()] = true
		}
	}
	if len(namespaces) > 1 {
		c.errorf("objects in several namespaces %v: the NetworkPolicies and Secret references assume one", sortedKeys(namespaces))
	}
}

func selectorOf(sel *metav1.LabelSelector) labels.Selector {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return labels.Nothing()
	}
	return s
}

func (c *checker) selector(what string, sel *metav1.LabelSelector) labels.Selector {
	if sel == nil {
		c.errorf("%s: no selector", what)
		return labels.Nothing()
	}
	c.fieldErrors(what, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, field.NewPath("selector")))
	return selectorOf(sel)
}

// workloads checks every Deployment: its pods, its containers against the
// binary, and the configuration it mounts.
func (c *checker) workloads() {
	for _, d := range c.m.deployments {
		c.deployment(d)
	}
	if c.ingest == nil {
		c.errorf("no Deployment runs `sluice ingest`")
	}
	for _, t := range c.targets {
		if c.appliers[t] == "" {
			c.errorf("target %s has no applier Deployment (sluice apply --target %s)", t, t)
		}
	}
}

func (c *checker) deployment(d *appsv1.Deployment) {
	what := "Deployment " + d.Name
	sel := c.selector(what, d.Spec.Selector)
	if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		c.errorf("%s: the selector does not select the pod template's labels", what)
	}
	pod := d.Spec.Template.Spec
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		c.errorf("%s: automountServiceAccountToken must be false: sluice never calls the Kubernetes API", what)
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		c.errorf("%s: the pod's securityContext must set runAsNonRoot, a non-zero runAsUser (the image's user is a name the kubelet cannot check) and seccompProfile RuntimeDefault", what)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
		if v.ConfigMap != nil && c.m.configByName[v.ConfigMap.Name] == nil {
			c.errorf("%s: volume %s: no ConfigMap %s is rendered", what, v.Name, v.ConfigMap.Name)
		}
	}
	if len(pod.Containers) != 1 {
		c.errorf("%s: %d containers; one sluice process per pod", what, len(pod.Containers))
	}
	for _, ct := range pod.InitContainers {
		c.container(d, ct, volumes, true)
	}
	for _, ct := range pod.Containers {
		c.container(d, ct, volumes, false)
	}
}

// container checks one container of Deployment d.
func (c *checker) container(d *appsv1.Deployment, ct corev1.Container, volumes map[string]corev1.Volume, initContainer bool) {
	what := fmt.Sprintf("Deployment %s, container %s", d.Name, ct.Name)
	for _, msg := range validation.IsDNS1123Label(ct.Name) {
		c.errorf("%s: name: %s", what, msg)
	}
	c.image(what, ct.Image)
	c.hardened(what, ct)
	ports := map[string]corev1.ContainerPort{}
	for _, p := range ct.Ports {
		for _, msg := range append(validation.IsValidPortName(p.Name), validation.IsValidPortNum(int(p.ContainerPort))...) {
			c.errorf("%s: port %s: %s", what, p.Name, msg)
		}
		if _, dup := ports[p.Name]; dup {
			c.errorf("%s: port %s given twice", what, p.Name)
		}
		ports[p.Name] = p
	}
	for _, vm := range ct.VolumeMounts {
		if _, ok := volumes[vm.Name]; !ok {
			c.errorf("%s: volumeMount %s: no such volume", what, vm.Name)
		}
	}

	// The command line: each flag one the command lists, and the binary
	// accepting the whole line.
	cmd, flagValues, err := parseArgs(ct.Args)
	if err != nil {
		c.errorf("%s: args %q: %v", what, ct.Args, err)
		return
	}
	if err := acceptsArgs(ct.Args); err != nil {
		c.errorf("%s: %v", what, err)
	}
	if len(ct.Command) > 0 {
		c.errorf("%s: command replaces the image's entrypoint (sluice): give args only", what)
	}
	c.listens(what, flagValues, ports)
	if !initContainer {
		c.probes(what, ct, ports)
	}

	// What each command's container is, before its configuration.
	switch cmd {
	case "ingest":
		if initContainer {
			c.errorf("%s: ingest as an init container", what)
			return
		}
		if c.ingest != nil {
			c.errorf("%s: a second ingest Deployment (also %s)", what, c.ingest.Name)
		}
		c.ingest = d
		c.publicPort, c.adminPort = portOf(flagValues["listen"], ct.Ports), portOf(flagValues["admin-listen"], ct.Ports)
		if c.publicPort.Name == "" || c.adminPort.Name == "" {
			c.errorf("%s: give both --listen and --admin-listen, each on a declared port (their defaults are loopback)", what)
		}
	case "apply":
		target := flagValues["target"]
		if other := c.appliers[target]; other != "" {
			c.errorf("%s: target %s already has the applier %s: one Deployment per target", what, target, other)
		}
		c.appliers[target] = d.Name
	case "migrate":
		if !initContainer {
			c.errorf("%s: migrate runs once, as an init container or a Job", what)
		}
	default:
		c.errorf("%s: sluice %s is not a command to run in a Deployment", what, cmd)
		return
	}

	// The configuration the container mounts, and the environment: the
	// binary loads the one with the other.
	cfg := c.config(what, ct, flagValues, volumes)
	env := c.environment(what, ct, cfg)
	if cfg == nil {
		return
	}
	targets, err := cfg.validate(env)
	if err != nil {
		c.errorf("%s: %v", what, err)
		return
	}
	if c.targets == nil {
		c.targets = targets
	} else if !slices.Equal(c.targets, targets) {
		c.errorf("%s: its configuration has the targets %v, another container's %v", what, targets, c.targets)
	}
	has := map[string]bool{}
	for _, e := range ct.Env {
		has[e.Name] = true
	}
	needsDSN := func(target string) {
		v, ok := cfg.dsnVars[target]
		switch {
		case !ok:
			c.errorf("%s: --target %q is not a configured target %v", what, target, targets)
		case !has[v]:
			c.errorf("%s: no %s: target %s's DSN (with its password) comes from the Secret", what, v, target)
		}
	}
	switch cmd {
	case "ingest":
		for _, t := range targets { // the admin API reads every target
			needsDSN(t)
		}
		drain, err1 := duration("ingest.drain_delay", cfg.cfg.Ingest.DrainDelay)
		write, err2 := duration("ingest.write_timeout", cfg.cfg.Ingest.WriteTimeout)
		if err := firstErr(err1, err2); err != nil {
			c.errorf("%s: %v", what, err)
			return
		}
		// A request lives at most write_timeout + 10s (ingest's write
		// deadline); then the producer flushes (5s).
		c.grace(what, d, drain+write+10*time.Second+5*time.Second, "ingest.drain_delay + ingest.write_timeout + 10s + 5s")
	case "apply":
		target := flagValues["target"]
		if !slices.Contains(targets, target) {
			c.errorf("%s: --target %q is not a configured target %v", what, target, targets)
			return
		}
		needsDSN(target)
		for t, v := range cfg.dsnVars {
			if t != target && has[v] {
				c.errorf("%s: %s: an applier gets its own target's DSN only", what, v)
			}
		}
		c.applierReplicas(what, d, cfg)
		timeout, err := duration("apply.apply_timeout", cfg.cfg.Apply.ApplyTimeout)
		if err != nil {
			c.errorf("%s: %v", what, err)
			return
		}
		// The batch in flight, then the ops server's shutdown (5s).
		c.grace(what, d, timeout+5*time.Second, "apply.apply_timeout + 5s")
	case "migrate":
		if t := flagValues["target"]; t != "" {
			needsDSN(t)
		}
	}
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// image: an overlay names the release it runs; the base's bare name is
// there for the overlays' images: transformer to replace.
func (c *checker) image(what, image string) {
	if image == "" {
		c.errorf("%s: no image", what)
		return
	}
	if c.base || strings.Contains(image, "@sha256:") {
		return
	}
	last := image[strings.LastIndex(image, "/")+1:]
	_, tag, ok := strings.Cut(last, ":")
	if !ok || tag == "latest" {
		c.errorf("%s: image %s: name a tag (not latest) or a digest, so that every pod runs the same build", what, image)
	}
}

// hardened: what Pod Security's "restricted" profile asks, and resources.
func (c *checker) hardened(what string, ct corev1.Container) {
	sc := ct.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		c.errorf("%s: securityContext.readOnlyRootFilesystem must be true", what)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.errorf("%s: securityContext.allowPrivilegeEscalation must be false", what)
	}
	if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		c.errorf("%s: securityContext.capabilities must drop ALL and add none", what)
	}
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		c.errorf("%s: privileged", what)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := ct.Resources.Requests[r]
		lim, hasLim := ct.Resources.Limits[r]
		switch {
		case !hasReq || !hasLim:
			c.errorf("%s: resources: give both a request and a limit of %s", what, r)
		case req.Cmp(lim) > 0:
			c.errorf("%s: resources: the %s request %s is over the limit %s", what, r, req.String(), lim.String())
		}
	}
}

// listens: every address flag (--listen, --admin-listen) binds the pod's
// interfaces on a declared port, and every declared port is one of them.
func (c *checker) listens(what string, flagValues map[string]string, ports map[string]corev1.ContainerPort) {
	bound := map[int32]bool{}
	for name, addr := range flagValues {
		if !strings.HasSuffix(name, "listen") {
			continue
		}
		host, port, err := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(port)
		if err != nil || n == 0 {
			c.errorf("%s: --%s %q: give HOST:PORT with a fixed port", what, name, addr)
			continue
		}
		if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
			c.errorf("%s: --%s %s: bind 0.0.0.0 (or [::]); only the pod's own processes reach %s", what, name, addr, host)
		}
		bound[int32(n)] = true
	}
	for _, p := range ports {
		if !bound[p.ContainerPort] {
			c.errorf("%s: port %s (%d): no --listen flag binds it", what, p.Name, p.ContainerPort)
		}
	}
	for n := range bound {
		if !portMatches(strconv.Itoa(int(n)), ports) {
			c.errorf("%s: listens on %d, which is not a declared container port", what, n)
		}
	}
}

// portOf is the declared port an address flag binds.
func portOf(addr string, ports []corev1.ContainerPort) corev1.ContainerPort {
	_, port, _ := net.SplitHostPort(addr)
	for _, p := range ports {
		if strconv.Itoa(int(p.ContainerPort)) == port {
			return p
		}
	}
	return corev1.ContainerPort{}
}

// config finds the configuration file the container reads (--config, else
// SLUICE_CONFIG) in the ConfigMap mounted there, and loads it once per
// ConfigMap.
func (c *checker) config(what string, ct corev1.Container, flagValues map[string]string, volumes map[string]corev1.Volume) *configFile {
	path := flagValues["config"]
	for _, e := range ct.Env {
		if e.Name == "SLUICE_CONFIG" && path == "" {
			path = e.Value
		}
	}
	if path == "" {
		c.errorf("%s: neither --config nor SLUICE_CONFIG: sluice would read sluice.yaml in the working directory", what)
		return nil
	}
	for _, vm := range ct.VolumeMounts {
		if filepath.Clean(vm.MountPath) != filepath.Dir(path) {
			continue
		}
		v := volumes[vm.Name]
		if v.ConfigMap == nil {
			break
		}
		cm := c.m.configByName[v.ConfigMap.Name]
		if cm == nil {
			return nil // named in the volume's check
		}
		if cfg, ok := c.configs[cm.Name]; ok {
			return cfg // nil when it did not load: said once
		}
		for k := range cm.Data {
			for _, msg := range validation.IsConfigMapKey(k) {
				c.errorf("ConfigMap %s: key %s: %s", cm.Name, k, msg)
			}
		}
		cfg, err := loadConfig(cm.Data, filepath.Base(path))
		if err != nil {
			c.errorf("ConfigMap %s: %v", cm.Name, err)
			c.configs[cm.Name] = nil
			return nil
		}
		c.configFileHoldsNoSecret("ConfigMap "+cm.Name, cfg)
		c.configs[cm.Name] = cfg
		return cfg
	}
	c.errorf("%s: the configuration %s is not in a ConfigMap mounted at %s", what, path, filepath.Dir(path))
	return nil
}

// configFileHoldsNoSecret: a ConfigMap is no place for a key, a token or a
// password. (Keys given as their SHA-256 digest are fine.)
func (c *checker) configFileHoldsNoSecret(what string, cfg *configFile) {
	if cfg.cfg.Ingest.AdminToken != "" {
		c.errorf("%s: ingest.admin_token: the token comes from the Secret (SLUICE_ADMIN_TOKEN)", what)
	}
	for i, k := range cfg.cfg.Ingest.Keys {
		if k.clear {
			c.errorf("%s: ingest.keys[%d] is a key in clear: give its sha256, or the key through SLUICE_INGEST_KEYS", what, i)
		}
	}
	for _, t := range cfg.cfg.Targets {
		if u, err := url.Parse(t.DSN); err != nil || strings.Contains(t.DSN, "password=") {
			c.errorf("%s: target %s: give the DSN as a URL without a password", what, t.Name)
		} else if _, has := u.User.Password(); has {
			c.errorf("%s: target %s: the DSN holds a password: the full DSN comes from the Secret (%s)", what, t.Name, cfg.dsnVars[t.Name])
		}
	}
}

// environment checks the container's variables and returns them as the
// container would get them, secrets read from the rendered Secret or, for a
// Secret made in the cluster, replaced by placeholders.
func (c *checker) environment(what string, ct corev1.Container, cfg *configFile) []string {
	known, err := readEnvNames()
	if err != nil {
		c.errorf("%v", err)
		return nil
	}
	if len(ct.EnvFrom) > 0 {
		c.errorf("%s: envFrom: name each variable under env, so that what the binary reads can be checked", what)
	}
	dsnVar := map[string]bool{}
	if cfg != nil {
		for _, v := range cfg.dsnVars {
			dsnVar[v] = true
		}
	}
	var env []string
	seen := map[string]bool{}
	for _, e := range ct.Env {
		for _, msg := range validation.IsEnvVarName(e.Name) {
			c.errorf("%s: env %s: %s", what, e.Name, msg)
		}
		if seen[e.Name] {
			c.errorf("%s: env %s given twice", what, e.Name)
		}
		seen[e.Name] = true
		// Without a configuration the DSN variables are not known: its error
		// is the finding then.
		if strings.HasPrefix(e.Name, "SLUICE_") && !known[e.Name] && !dsnVar[e.Name] && cfg != nil {
			c.errorf("%s: env %s: sluice reads no such variable (it reads %s, and the DSN variables %s)", what, e.Name,
				strings.Join(sortedKeys(known), ", "), strings.Join(sortedKeys(dsnVar), ", "))
		}
		secret := secretEnv.MatchString(e.Name) || dsnVar[e.Name]
		switch {
		case e.ValueFrom == nil:
			if secret {
				c.errorf("%s: env %s: a secret written in the manifest: take it from the Secret (valueFrom.secretKeyRef)", what, e.Name)
			}
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			value := "k8s-check-placeholder-0123456789"
			if dsnVar[e.Name] {
				value = "postgres://k8s-check@invalid/check"
			}
			if s := c.m.secretNames[ref.Name]; s != nil {
				v, ok := s.Data[ref.Key]
				if sv, sok := s.StringData[ref.Key]; sok {
					v, ok = []byte(sv), true
				}
				if !ok {
					c.errorf("%s: env %s: the Secret %s has no key %s", what, e.Name, ref.Name, ref.Key)
				}
				value = string(v)
			}
			c.secretRefs[ref.Key] = true
			env = append(env, e.Name+"="+value)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			if secret {
				c.errorf("%s: env %s: a secret from a ConfigMap: take it from a Secret", what, e.Name)
			}
			cm := c.m.configByName[ref.Name]
			if cm == nil {
				c.errorf("%s: env %s: no ConfigMap %s is rendered", what, e.Name, ref.Name)
				continue
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				c.errorf("%s: env %s: the ConfigMap %s has no key %s", what, e.Name, ref.Name, ref.Key)
			}
			env = append(env, e.Name+"="+v)
		}
	}
	return env
}

// applierReplicas: a consumer group gives each partition to one member;
// replicas beyond kafka.partitions sit idle (and so do surge pods).
func (c *checker) applierReplicas(what string, d *appsv1.Deployment, cfg *configFile) {
	p := cfg.cfg.Kafka.Partitions
	if p == nil {
		c.errorf("%s: kafka.partitions is not set in the ConfigMap's file: set it, since the appliers' replicas are bounded by it", what)
		return
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if int(replicas) > *p {
		c.errorf("%s: %d replicas, over the topic's %d partitions: the extra members would own none", what, replicas, *p)
	}
	if s := d.Spec.Strategy.RollingUpdate; s != nil && s.MaxSurge != nil && s.MaxSurge.IntValue() != 0 {
		c.errorf("%s: maxSurge must be 0: a surge pod joins the group beyond replicas", what)
	}
}

// grace: the pod's terminationGracePeriodSeconds covers the process's own
// shutdown, else the kubelet kills it mid-drain.
func (c *checker) grace(what string, d *appsv1.Deployment, need time.Duration, formula string) {
	got := 30 * time.Second // Kubernetes' default
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		got = time.Duration(*g) * time.Second
	}
	if got < need {
		c.errorf("%s: terminationGracePeriodSeconds %v is under %s = %v", what, got, formula, need)
	}
}

// probes: readiness on /readyz and liveness on /healthz, on declared ports.
func (c *checker) probes(what string, ct corev1.Container, ports map[string]corev1.ContainerPort) {
	for _, p := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"readinessProbe", "/readyz", ct.ReadinessProbe}, {"livenessProbe", "/healthz", ct.LivenessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path {
			c.errorf("%s: %s: give an httpGet of %s", what, p.name, p.path)
			continue
		}
		if !portMatches(p.probe.HTTPGet.Port.String(), ports) {
			c.errorf("%s: %s: port %s is not a declared container port", what, p.name, p.probe.HTTPGet.Port.String())
		}
	}
}

// portMatches: a port given by name or number is one of ports.
func portMatches(port string, ports map[string]corev1.ContainerPort) bool {
	for _, p := range ports {
		if p.Name == port || strconv.Itoa(int(p.ContainerPort)) == port {
			return true
		}
	}
	return false
}

// secrets: the base defines none (every container references Secrets by
// name); an overlay may generate only dev placeholders.
func (c *checker) secrets() {
	for _, s := range c.m.secrets {
		if c.base {
			c.errorf("Secret %s in the base: the base references Secrets by name; an overlay provides them", s.Name)
		}
		for k, v := range s.Data {
			if !strings.Contains(string(v), devMarker) {
				c.errorf("Secret %s: the value of %s is not marked %s: a real secret never goes in this repository (create it in the cluster)", s.Name, k, devMarker)
			}
		}
		for k, v := range s.StringData {
			if !strings.Contains(v, devMarker) {
				c.errorf("Secret %s: the value of %s is not marked %s", s.Name, k, devMarker)
			}
		}
	}
}

// podsOf are the Deployments whose pods sel selects.
func (c *checker) podsOf(sel labels.Selector) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range c.m.deployments {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d)
		}
	}
	return out
}

// services: each selects pods and targets their declared ports; the
// public port and the admin port are never behind one Service, and the
// admin port's Service stays inside the cluster.
func (c *checker) services() {
	var public, admin bool
	for _, s := range c.m.services {
		what := "Service " + s.Name
		if len(s.Spec.Selector) == 0 {
			c.errorf("%s: no selector", what)
			continue
		}
		pods := c.podsOf(labels.SelectorFromSet(s.Spec.Selector))
		if len(pods) == 0 {
			c.errorf("%s: selects no Deployment's pods", what)
		}
		var toPublic, toAdmin bool
		for _, sp := range s.Spec.Ports {
			for _, d := range pods {
				ports := map[string]corev1.ContainerPort{}
				for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
					ports[p.Name] = p
				}
				target := sp.TargetPort.String()
				if sp.TargetPort.IntValue() == 0 && sp.TargetPort.StrVal == "" {
					target = strconv.Itoa(int(sp.Port))
				}
				if !portMatches(target, ports) {
					c.errorf("%s: port %s targets %s, not a port of %s", what, sp.Name, target, d.Name)
				}
				if d == c.ingest {
					toPublic = toPublic || target == c.publicPort.Name || target == strconv.Itoa(int(c.publicPort.ContainerPort))
					toAdmin = toAdmin || target == c.adminPort.Name || target == strconv.Itoa(int(c.adminPort.ContainerPort))
				}
			}
		}
		if toPublic && toAdmin {
			c.errorf("%s: exposes both ingest's public and admin ports: give the admin port its own ClusterIP Service", what)
		}
		if toAdmin && s.Spec.Type != corev1.ServiceTypeClusterIP && s.Spec.Type != "" {
			c.errorf("%s: type %s exposes the admin API outside the cluster: keep it ClusterIP", what, s.Spec.Type)
		}
		public, admin = public || toPublic, admin || toAdmin
	}
	if c.ingest != nil && (!public || !admin) {
		c.errorf("ingest's public port and admin port each need a Service (public: %v, admin: %v)", public, admin)
	}
}

// scaling: ingest has an HPA (on the request rate) and a PDB that lets a
// drain proceed.
func (c *checker) scaling() {
	var hpaMin int32
	for _, h := range c.m.hpas {
		what := "HorizontalPodAutoscaler " + h.Name
		ref := h.Spec.ScaleTargetRef
		var target *appsv1.Deployment
		for _, d := range c.m.deployments {
			if ref.Kind == "Deployment" && ref.APIVersion == "apps/v1" && ref.Name == d.Name {
				target = d
			}
		}
		if target == nil {
			c.errorf("%s: scales %s %s %s, which is not rendered", what, ref.APIVersion, ref.Kind, ref.Name)
			continue
		}
		if target.Spec.Replicas != nil {
			c.errorf("%s: Deployment %s sets replicas, which every apply would reset under the autoscaler: leave it out", what, target.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			c.errorf("%s: give 1 <= minReplicas <= maxReplicas", what)
		}
		if target != c.ingest {
			continue
		}
		hpaMin = *h.Spec.MinReplicas
		rate := slices.ContainsFunc(h.Spec.Metrics, func(m autoscalingv2.MetricSpec) bool {
			return m.Type == "Pods" && m.Pods != nil && m.Pods.Metric.Name == requestRateMetric && m.Pods.Target.AverageValue != nil
		})
		if !rate {
			c.errorf("%s: no Pods metric %s with an averageValue target: ingest scales on its request rate", what, requestRateMetric)
		}
	}
	if c.ingest != nil && hpaMin == 0 {
		c.errorf("no HorizontalPodAutoscaler scales %s", c.ingest.Name)
	}
	var pdb bool
	for _, p := range c.m.pdbs {
		what := "PodDisruptionBudget " + p.Name
		sel := c.selector(what, p.Spec.Selector)
		if len(c.podsOf(sel)) == 0 {
			c.errorf("%s: selects no Deployment's pods", what)
		}
		if c.ingest == nil || !sel.Matches(labels.Set(c.ingest.Spec.Template.Labels)) {
			continue
		}
		pdb = true
		if p.Spec.MinAvailable != nil && p.Spec.MinAvailable.Type == 0 && p.Spec.MinAvailable.IntVal >= hpaMin {
			c.errorf("%s: minAvailable %d with as few as %d replicas blocks every drain", what, p.Spec.MinAvailable.IntVal, hpaMin)
		}
	}
	if c.ingest != nil && !pdb {
		c.errorf("no PodDisruptionBudget covers %s", c.ingest.Name)
	}
}
