package selfplaytest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// clockTick is the unit of CPU times in /proc/<pid>/stat (USER_HZ, which
// Linux fixes at 100 for user space).
const clockTick = 10 * time.Millisecond

// procStat is what CPU accounting needs from /proc/<pid>/stat.
type procStat struct {
	ppid int
	// cpu is utime + stime (the process's own, all threads) plus cutime +
	// cstime (its children that ended and were waited for).
	cpu time.Duration
}

// readStat reads /proc/<pid>/stat. The command name may hold spaces and
// parentheses, so fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(b[i+1:])
	// After the name: state ppid pgrp session tty_nr tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime (proc(5)).
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	var ticks [4]int64
	for j := range ticks {
		if ticks[j], err = strconv.ParseInt(string(f[11+j]), 10, 64); err != nil {
			return procStat{}, fmt.Errorf("/proc/%d/stat field %d: %w", pid, 14+j, err)
		}
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat ppid: %w", pid, err)
	}
	return procStat{ppid: ppid, cpu: time.Duration(ticks[0]+ticks[1]+ticks[2]+ticks[3]) * clockTick}, nil
}

// CPUTime is the CPU time (user plus system) a running process and all its
// descendants have used so far: their own, and that of descendants that
// ended and were waited for (a PostgreSQL postmaster reaps its backends,
// so their time stays counted after they exit). Its resolution is 10 ms
// per process.
func CPUTime(pid int) (time.Duration, error) {
	root, err := readStat(pid)
	if err != nil {
		return 0, fmt.Errorf("cpu time of process %d: %w", pid, err)
	}
	children := map[int][]int{}
	stats := map[int]procStat{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil || p == pid {
			continue
		}
		st, err := readStat(p)
		if err != nil {
			continue // ended meanwhile: its parent's cutime has it
		}
		stats[p] = st
		children[st.ppid] = append(children[st.ppid], p)
	}
	total := root.cpu
	queue := children[pid]
	for len(queue) > 0 {
		p := queue[0]
		queue = append(queue[1:], children[p]...)
		total += stats[p].cpu
	}
	return total, nil
}
