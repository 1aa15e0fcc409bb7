package guard

import (
	"runtime"
	"syscall"
)

// Background runs fn on a fresh OS thread at the lowest CPU priority and waits for it. A
// bcrypt check that a stranger can cause then yields the CPU to serving technicians and
// agents whenever both want it. The thread ends with fn: its priority cannot be raised
// again without privileges, so it is not given back to the runtime.
func Background(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 19)
		fn()
	}()
	<-done
}
