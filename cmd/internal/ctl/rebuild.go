package ctl

import (
	"context"
	"fmt"
)

func rebuildCommand() command {
	return command{
		name:    "rebuild",
		summary: "rebuild the acknowledgement projection or its timers from the log",
		usage: `heraldctl rebuild timers|projection: ask the acknowledgement service to restore its Redis state
from the compacted state topic and re-arm every open timer, deadlines first, as it does by itself
when it finds Redis wiped.
`,
		run: func(context.Context, *env, []string) error {
			return fmt.Errorf("not available yet: restart the acknowledgement service after clearing its epoch key to force a rebuild")
		},
	}
}
