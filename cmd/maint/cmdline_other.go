//go:build !windows

package main

// rawArgs is only needed on Windows: elsewhere the shell has already split the command
// line as proxytunnel expects, and os.Args holds its words.
func rawArgs() ([]string, bool) { return nil, false }
