package pgtenant_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuMeter measures the CPU time a benchmark's timed loop costs, in this
// process (the client) and in the local PostgreSQL server's processes, so a
// figure can be read per operation: wall time on this shared two-core
// machine moves by ±30 % between runs, CPU per operation much less.
type cpuMeter struct {
	client, server time.Duration
}

func readCPU() cpuMeter {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	m := cpuMeter{client: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	// Every process named postgres: backends, walwriter and the rest. On
	// Linux the clock tick is 100 Hz, so the loop should run ≥ 1 s.
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open || s[open+1:close] != "postgres" {
			continue
		}
		f := strings.Fields(s[close+2:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		k, _ := strconv.ParseInt(f[12], 10, 64)
		m.server += time.Duration(u+k) * 10 * time.Millisecond
	}
	return m
}

// report adds client-µs/op and server-µs/op for the loop since start.
func (start cpuMeter) report(b *testing.B) {
	b.StopTimer() // reading /proc allocates: not the operation's
	end := readCPU()
	n := float64(b.N)
	b.ReportMetric(float64((end.client-start.client).Microseconds())/n, "client-µs/op")
	if end.server > 0 {
		b.ReportMetric(float64((end.server-start.server).Microseconds())/n, "server-µs/op")
	}
}
