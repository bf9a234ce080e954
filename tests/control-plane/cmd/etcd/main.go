// Command etcd is the etcd server, built at the version pinned in go.mod so
// that the test control plane needs no etcd package from the machine.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
