// Command buildhydra builds (once) the Ory Hydra binary the development
// identity provider runs, and prints its path: `make idp`, which `make
// test` and `make run` run first, so no test waits for the build.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/herald-health/herald/platform/devidp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	bin, err := devidp.Binary(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildhydra:", err)
		os.Exit(1)
	}
	fmt.Println(bin)
}
