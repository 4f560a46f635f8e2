package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"
)

// exitOutOfMemory is the exit code that tells the controller a build hit the memory limit.
const exitOutOfMemory = 3

// The resident set is checked this often: a build that explodes grows by a few hundred MB
// a second, so it is stopped a few MB past the limit.
const memoryCheckInterval = 10 * time.Millisecond

// limitMemory stops the process once its resident set passes limit bytes. The address space
// is no measure for this (an idle Go process reserves 1.5 GB of it), nor is the Go heap
// alone, so the kernel's count of resident pages is read.
func limitMemory(limit int64) {
	// Collect garbage harder as the limit nears, so that a large build that fits does.
	debug.SetMemoryLimit(limit * 3 / 4)
	go func() {
		pageSize := int64(os.Getpagesize())
		for range time.Tick(memoryCheckInterval) {
			if pages := residentPages(); pages*pageSize > limit {
				fmt.Fprintf(os.Stderr, "out of memory: the build used more than %d bytes\n", limit)
				os.Exit(exitOutOfMemory)
			}
		}
	}()
}

// residentPages is the second field of /proc/self/statm; 0 if it cannot be read.
func residentPages() int64 {
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := bytes.Fields(statm)
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(string(fields[1]), 10, 64)
	return pages
}
