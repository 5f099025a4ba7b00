package badgerindex

import (
	"io/fs"
	"syscall"
)

// statIdentity is the part of a table's stamp that no write can keep
// unchanged: its change time (set by the kernel on every write, and not
// settable by touch or utimes) and its inode and device.
func statIdentity(fi fs.FileInfo) (tableStamp, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return tableStamp{}, false
	}
	return tableStamp{CTime: st.Ctim.Nano(), Inode: uint64(st.Ino), Device: uint64(st.Dev)}, true
}
