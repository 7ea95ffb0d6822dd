// Package check renders every kustomization of deploy/kubernetes with
// kustomize's own library and checks what it renders: strictly against the
// Kubernetes API types (an unknown or misspelt field is an error), against
// the sluice binary (its flags, the environment it reads, the configuration
// it accepts) and against the invariants the manifests promise (probes,
// security contexts, secrets only by reference, applier replicas <=
// partitions, who may reach which port). `make k8s-check` runs it.
//
// It is a module of its own so that the sluice module does not depend on
// Kubernetes' libraries.
package check

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var (
	// kubeDir is deploy/kubernetes: the base and overlays/*.
	kubeDir string
	// sluice is the binary whose flags and environment the manifests must
	// match: $SLUICE_BIN, else built from this repository's cmd/sluice.
	sluice string
	// configDir holds the configuration files of the rendered ConfigMaps,
	// for the binary to read.
	configDir string
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		var err error
		if kubeDir, err = filepath.Abs(".."); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		dir, err := os.MkdirTemp("", "k8s-check-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		configDir = filepath.Join(dir, "configs")
		if sluice = os.Getenv("SLUICE_BIN"); sluice == "" {
			sluice = filepath.Join(dir, "sluice")
			build := exec.Command("go", "build", "-o", sluice, "./cmd/sluice")
			build.Dir = filepath.Join(kubeDir, "..", "..")
			build.Stdout, build.Stderr = os.Stderr, os.Stderr
			if err := build.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "building sluice:", err)
				return 1
			}
		}
		return m.Run()
	}())
}
