// Command etcd runs the etcd server from Go modules (etcd's own go.mod has replace
// lines, so `go install` cannot build it; this wrapper module can).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
