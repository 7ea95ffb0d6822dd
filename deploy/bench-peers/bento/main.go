// Command bento is Bento (github.com/warpstreamlabs/bento) with only the
// components the drain benchmark's peer needs: the kafka inputs, the sql
// outputs with the postgres driver, and the pure processors and brokers.
// It is a module of its own so that the sluice module never takes Bento's
// dependencies; deploy/bench-peers/bento/build builds it once into
// .stack/bin.
package main

import (
	"context"
	"runtime/debug"

	"github.com/warpstreamlabs/bento/public/service"

	_ "github.com/lib/pq" // driver: postgres
	_ "github.com/warpstreamlabs/bento/public/components/kafka"
	_ "github.com/warpstreamlabs/bento/public/components/pure"
	_ "github.com/warpstreamlabs/bento/public/components/sql/base"
)

func main() {
	service.RunCLI(
		context.Background(),
		service.CLIOptSetVersion(bentoVersion(), ""),
		service.CLIOptSetBinaryName("bento"),
		service.CLIOptSetProductName("Bento"),
		service.CLIOptSetDocumentationURL("https://warpstreamlabs.github.io/bento/docs"),
		service.CLIOptSetShowRunCommand(true),
	)
}

// bentoVersion is the version of the Bento module this binary was built
// with, as go.mod requires it.
func bentoVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/warpstreamlabs/bento" {
				return d.Version
			}
		}
	}
	return "unknown"
}
