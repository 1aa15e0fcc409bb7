//go:build unix

package gate

import "syscall"

// FileLimit is the process's limit of open files (the soft RLIMIT_NOFILE, which the Go
// runtime raises to the hard one at start), or false if unknown.
func FileLimit() (int, bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur > 1<<30 {
		return 0, false
	}
	return int(l.Cur), true
}
