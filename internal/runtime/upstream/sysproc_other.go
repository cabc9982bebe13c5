//go:build unix && !linux

package upstream

import "syscall"

// sysProcAttr puts the child in its own process group so signals reach the whole tree.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// groupAlive reports whether any process of group pgid (zombies included) is left.
func groupAlive(pgid int) bool {
	return syscall.Kill(-pgid, 0) == nil
}
