//go:build !linux

package pgbouncer

import "os/exec"

// runAs returns the configuration line that has PgBouncer, started as
// root, drop to the user name after reading its configuration.
func runAs(_ *exec.Cmd, name string) string { return "user = " + name + "\n" }

// giveTo has nothing to do: PgBouncer reads its configuration as root.
func giveTo(*exec.Cmd, string) error { return nil }

// dieWithParent cannot ask the kernel for anything here: PgBouncer is
// stopped by Stop only.
func dieWithParent(*exec.Cmd) {}
