package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// process identifies a process across PID reuse: a PID names the same
// process only while its start time is unchanged.
type process struct {
	pid       int
	startTime string // clock ticks after boot, field 22 of /proc/PID/stat
	comm      string
}

func (p process) String() string { return fmt.Sprintf("%s[%d]", p.comm, p.pid) }

// descendants lists every process below root in the process tree, read from
// /proc. Processes already reparented away from root are not found, so
// call it while root's children are still attached.
func descendants(root int) []process {
	children := map[int][]process{}
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range paths {
		p, ppid, ok := readStat(path)
		if ok {
			children[ppid] = append(children[ppid], p)
		}
	}
	var tree []process
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, child := range children[pid] {
			tree = append(tree, child)
			queue = append(queue, child.pid)
		}
	}
	return tree
}

// readStat parses /proc/PID/stat. comm, field 2, is in parentheses and may
// itself contain spaces and parentheses, so fields are counted from the
// last ')'.
func readStat(path string) (p process, ppid int, ok bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return p, 0, false // the process ended while we looked
	}
	s := string(data)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return p, 0, false
	}
	// After comm: state(3) ppid(4) ... starttime(22).
	fields := strings.Fields(s[end+1:])
	if len(fields) < 20 {
		return p, 0, false
	}
	pid, err1 := strconv.Atoi(strings.TrimSpace(s[:open]))
	ppid, err2 := strconv.Atoi(fields[1])
	if err1 != nil || err2 != nil {
		return p, 0, false
	}
	return process{pid: pid, startTime: fields[19], comm: s[open+1 : end]}, ppid, true
}

// alive reports whether p is still running as the same process (a zombie
// waiting to be reaped counts as gone).
func (p process) alive() bool {
	now, _, ok := readStat(fmt.Sprintf("/proc/%d/stat", p.pid))
	if !ok || now.startTime != p.startTime {
		return false
	}
	state, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	return err == nil && !strings.Contains(string(state), "\nState:\tZ")
}

// killAll SIGKILLs whichever of procs are still running and returns them.
func killAll(procs []process) []process {
	var killed []process
	for _, p := range procs {
		if p.alive() && syscall.Kill(p.pid, syscall.SIGKILL) == nil {
			killed = append(killed, p)
		}
	}
	return killed
}
