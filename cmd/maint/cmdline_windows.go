//go:build windows

package main

import (
	"syscall"
	"unsafe"
)

// maxCommandLine is Windows' limit on a command line, in UTF-16 units.
const maxCommandLine = 32768

// rawArgs reads the process's command line as proxytunnel.exe (a Cygwin program) would:
// Windows' own splitting, which os.Args follows, keeps single quotes in the arguments.
func rawArgs() ([]string, bool) {
	p := unsafe.Pointer(syscall.GetCommandLine())
	if p == nil {
		return nil, false
	}
	var units []uint16
	for i := 0; i < maxCommandLine; i++ {
		u := *(*uint16)(unsafe.Add(p, 2*i))
		if u == 0 {
			break
		}
		units = append(units, u)
	}
	args := splitCygwin(syscall.UTF16ToString(units))
	if len(args) == 0 {
		return nil, false
	}
	return args[1:], true
}
