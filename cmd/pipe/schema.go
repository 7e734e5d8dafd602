package main

import "fmt"

// cmdSchema dispatches `pipe schema <command>`.
func cmdSchema(e *env, args []string) int {
	if len(args) > 0 && args[0] == "pull" {
		return cmdSchemaPull(e, args[1:])
	}
	fmt.Fprintln(e.stderr, "usage: pipe schema pull --registry URL --subject S [--version V] -o DIR")
	return exitUsage
}
