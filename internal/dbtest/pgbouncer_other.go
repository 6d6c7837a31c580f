//go:build !linux

package dbtest

import "os/exec"

// runAs returns the configuration line that has PgBouncer, started as
// root, drop to the user name after reading its configuration.
func runAs(_ *exec.Cmd, name string) string { return "user = " + name + "\n" }

// giveTo has nothing to do: PgBouncer reads its configuration as root.
func giveTo(*exec.Cmd, string) error { return nil }

// dieWithTest cannot ask the kernel for anything here: PgBouncer is
// stopped by the test's cleanup only.
func dieWithTest(*exec.Cmd) {}
