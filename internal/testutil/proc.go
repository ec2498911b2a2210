package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// statFields returns the fields of /proc/<pid>/stat after the parenthesised
// command name (which may contain spaces): field 3 of proc(5) is index 0.
func statFields(pid string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return nil, err
	}
	s := string(data)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+2:]), nil
}

// cpuOf is the user and system time of a process and of its children it
// waited for (proc(5) fields 14 to 17), in seconds.
func cpuOf(fields []string) float64 {
	ticks := 0.0
	for _, f := range fields[11:15] {
		n, _ := strconv.ParseFloat(f, 64)
		ticks += n
	}
	const clockTicks = 100 // USER_HZ on Linux
	return ticks / clockTicks
}

// CPUSeconds is a process's user+system CPU time so far. Unlike wall-clock
// rates it barely moves when other work shares the machine.
func CPUSeconds(pid int) (float64, error) {
	fields, err := statFields(strconv.Itoa(pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	return cpuOf(fields), nil
}

// GroupCPUSeconds sums the CPU time of the live processes of a process group,
// such as a broker's start script and the VM it runs.
func GroupCPUSeconds(pgid int) (float64, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	want := strconv.Itoa(pgid)
	total := 0.0
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		fields, err := statFields(d.Name())
		if err != nil || fields[2] != want { // field 5, pgrp
			continue // exited meanwhile, or another group
		}
		total += cpuOf(fields)
	}
	return total, nil
}

// RSSKiB is a process's resident set size (VmRSS) in KiB.
func RSSKiB(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return 0, fmt.Errorf("no VmRSS for process %d", pid)
}
