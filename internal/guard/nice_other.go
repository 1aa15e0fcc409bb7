//go:build !linux

package guard

// Background runs fn; only Linux lowers the priority of the thread it runs on.
func Background(fn func()) { fn() }
