//go:build !unix

package gate

// FileLimit is unknown on this system.
func FileLimit() (int, bool) { return 0, false }
