package testutil

import "os"

// Lines returns the channel of the child's stdout lines, closed when its
// stdout ends, for tests that watch several children at once from their
// own goroutines (Line and Expect fail the test and so belong to the test
// goroutine). A child's lines go either to Lines or to Line/Expect, not both.
func (c *Child) Lines() <-chan string { return c.lines }

// Done is closed when the child has exited and was reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// Exited reports whether the child has exited and, if so, its exit error
// (nil on exit 0). It does not wait.
func (c *Child) Exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.err
	default:
		return false, nil
	}
}

// IsChild reports whether this process was started by StartChild, so that
// a TestMain can skip its own setup (building binaries) in children before
// calling Main.
func IsChild() bool { return os.Getenv(childEnv) != "" }
