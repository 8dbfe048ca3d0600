package main

import "syscall"

// childSysProcAttr kills a child if the benchmark itself dies, so no simulator or server
// outlives an interrupted run.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
