//go:build unix

package main

import "syscall"

// restrictUmask makes the files and directories the process creates from now
// on private to its user, whatever mode the code creating them asks for.
func restrictUmask() {
	syscall.Umask(0o077)
}
