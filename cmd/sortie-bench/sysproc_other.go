//go:build !linux

package main

import "syscall"

// childSysProcAttr has nothing to add where there is no parent-death signal; children still
// stop when their stdin closes.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
