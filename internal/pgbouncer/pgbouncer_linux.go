package pgbouncer

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// runAs starts cmd as the user name (we run as root) and returns
// the configuration lines that takes: none, as PgBouncer starts as that
// user (had it dropped root itself, the kernel would forget dieWithParent).
// Its configuration must be readable by that user: giveTo sees to it.
func runAs(cmd *exec.Cmd, name string) string {
	u, err := user.Lookup(name)
	if err != nil {
		return "user = " + name + "\n"
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return "user = " + name + "\n"
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return ""
}

// giveTo lets cmd's user (see runAs) read path and the directories above
// it that we created.
func giveTo(cmd *exec.Cmd, path string) error {
	if cmd.SysProcAttr == nil || cmd.SysProcAttr.Credential == nil {
		return nil
	}
	c := cmd.SysProcAttr.Credential
	if err := os.Chown(path, int(c.Uid), int(c.Gid)); err != nil {
		return err
	}
	// Temporary directories are 0700: let the user through the ones
	// under the temporary directory, and no one else read the
	// configuration (it may hold a password).
	tmp := filepath.Clean(os.TempDir()) + string(filepath.Separator)
	for dir := filepath.Dir(path); strings.HasPrefix(dir, tmp); dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o711); err != nil {
			return err
		}
	}
	return nil
}

// dieWithParent has the kernel kill PgBouncer when the process that started it ends,
// even if it never stops it (a panic, a timeout, a kill).
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
