// Package demo replays the seed walkthrough (AWS Compute Blog, "Amazon ECS
// and Docker volume drivers, part 1: Amazon EBS"; seed/README.md) against a
// local AWS world with the real aws CLI: a Session runs the seed's shell
// snippets as one terminal would, a Watcher follows the service's task and
// its EBS volume through the SDK while the walkthrough waits, a MySQL runs
// the seed's SQL with the mariadb client. `make demo` (test/cmd/tetherdemo)
// and test/e2e are built on it.
package demo

import (
	"embed"
	"io/fs"
)

//go:embed seed
var seedFS embed.FS

// Seed returns the seed file name (get-outputs.sh, taskdef.sh, step5.sql...;
// see seed/README.md), or nil if there is none.
func Seed(name string) []byte {
	b, err := fs.ReadFile(seedFS, "seed/"+name)
	if err != nil {
		return nil
	}
	return b
}
