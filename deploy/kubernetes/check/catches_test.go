package check

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCatches breaks a copy of the manifests one way at a time and expects
// the check to say so: a check that cannot fail proves nothing.
func TestCatches(t *testing.T) {
	const (
		ingest  = "base/ingest.yaml"
		applyA  = "base/apply-a.yaml"
		applyB  = "base/apply-b.yaml"
		config  = "base/sluice.yaml"
		netpol  = "base/networkpolicy.yaml"
		dev     = "overlays/dev"
		prod    = "overlays/production"
		adminSt = `            - name: SLUICE_ADMIN_TOKEN
              valueFrom:
                secretKeyRef:
                  name: sluice-secrets
                  key: admin-token
`
	)
	for _, tc := range []struct {
		name, dir, file, old, new, want string
	}{
		{"a misspelt field", dev, ingest, "terminationGracePeriodSeconds: 45", "terminationGracePeriodSecond: 45", `unknown field "spec.template.spec.terminationGracePeriodSecond"`},
		{"a flag sluice does not have", dev, ingest, "--admin-listen,", "--admin-listn,", "has no flag --admin-listn"},
		{"a flag value sluice refuses", dev, applyA, "[migrate, --target, a]", "[migrate, --target, a, --lock-timeout, soon]", "--help exited 2"},
		{"a positional argument", dev, applyA, "[apply, --target, a,", "[apply, a,", `unexpected argument "a"`},
		{"a loopback listener", dev, ingest, `"0.0.0.0:8081"`, `"127.0.0.1:8081"`, "bind 0.0.0.0 (or [::])"},
		{"a variable sluice does not read", dev, ingest, "name: SLUICE_ADMIN_TOKEN", "name: SLUICE_ADMIN_TOKENS", "sluice reads no such variable"},
		{"a secret written in a manifest", prod, ingest, adminSt, "            - name: SLUICE_ADMIN_TOKEN\n              value: not-in-a-manifest-0123456789\n", "a secret written in the manifest"},
		{"a real secret in the dev overlay", dev, "overlays/dev/dev-secrets.env", "admin-token=dev-only-admin-token-0123456789", "admin-token=a-real-token-0123456789", "is not marked dev-only"},
		{"a Secret in the base", "base", netpol, "# Every sluice pod is isolated", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: extra\nstringData:\n  k: v\n---\n# Every sluice pod is isolated", "Secret extra in the base"},
		{"applier replicas over the partitions", prod, "overlays/production/kustomization.yaml", "path: /spec/replicas\n        value: 3", "path: /spec/replicas\n        value: 13", "13 replicas, over the topic's 12 partitions"},
		{"a readiness probe elsewhere", dev, applyB, "path: /readyz", "path: /ready", "readinessProbe: give an httpGet of /readyz"},
		{"a grace period shorter than the drain", dev, ingest, "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 20", "terminationGracePeriodSeconds 20s is under"},
		{"the admin port open to all", dev, netpol, "        - port: http\n", "        - port: http\n        - port: admin\n", "port admin: admits connections from outside the namespace"},
		{"a writable root filesystem", dev, ingest, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem must be true"},
		{"a configuration key sluice does not have", dev, config, "drain_delay: 10s", "drain_dealy: 10s", "sluice does not accept the configuration"},
		{"a password in the ConfigMap", dev, config, "postgres://sluice@postgres-a", "postgres://sluice:pw@postgres-a", "the DSN holds a password"},
		{"ingest without a target's DSN", prod, ingest, "            - name: SLUICE_TARGET_B_DSN\n", "            - name: SLUICE_TARGET_C_DSN\n", "no SLUICE_TARGET_B_DSN: target b's DSN"},
		{"a misspelt DSN variable", dev, applyA, "SLUICE_TARGET_A_DSN", "SLUICE_TARGETS_A_DSN", "env SLUICE_TARGETS_A_DSN: sluice reads no such variable"},
		{"an applier with another target's DSN", dev, applyB, "SLUICE_TARGET_B_DSN", "SLUICE_TARGET_A_DSN", "an applier gets its own target's DSN only"},
		{"the admin Service outside the cluster", prod, ingest, "  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: sluice\n    app.kubernetes.io/component: ingest\n  ports:\n    - name: admin",
			"  type: LoadBalancer\n  selector:\n    app.kubernetes.io/name: sluice\n    app.kubernetes.io/component: ingest\n  ports:\n    - name: admin", "type LoadBalancer exposes the admin API"},
		{"an HPA not on the request rate", prod, ingest, "name: sluice_ingest_requests_per_second", "name: sluice_ingest_rps", "no Pods metric sluice_ingest_requests_per_second"},
		{"replicas beside the HPA", prod, ingest, "  # No replicas:", "  replicas: 2\n  # No replicas:", "sets replicas"},
		{"an unpinned image", prod, "overlays/production/kustomization.yaml", `newTag: "1.0.0"`, `newTag: "latest"`, "name a tag (not latest)"},
		{"a target without an applier", prod, "base/kustomization.yaml", "  - apply-b.yaml\n", "", "target b has no applier Deployment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			copyTree(t, kubeDir, root)
			path := filepath.Join(root, tc.file)
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(src), tc.old) {
				t.Fatalf("%s has no %q: update this case", tc.file, tc.old)
			}
			if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(src), tc.old, tc.new)), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := check(root, tc.dir)
			var found []string
			if err != nil {
				found = []string{err.Error()}
			} else {
				found = c.errs
			}
			for _, e := range found {
				if strings.Contains(e, tc.want) {
					t.Log(e)
					return
				}
			}
			t.Errorf("no finding says %q; the check found:\n%s", tc.want, strings.Join(found, "\n"))
		})
	}
}

// copyTree copies deploy/kubernetes's manifests (not the check) into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			if rel == "check" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}
