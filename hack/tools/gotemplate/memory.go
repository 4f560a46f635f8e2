package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// exitOutOfMemory says that rendering was stopped at the memory limit.
const exitOutOfMemory = 4

// A template can grow memory by gigabytes a second (`{{ repeat 1000000000 "x" }}` builds its
// whole string before anything is written, so the output cap alone does not stop it).
const memoryCheckInterval = 2 * time.Millisecond

// superviseRendering runs this program again as the renderer (with -render and args), its
// standard streams passed through, and kills it once its resident set passes limit bytes;
// it returns the exit code to leave with.
//
// The watch runs in another process because a watchdog goroutine in the renderer cannot be
// relied on: while a large allocation is cleared the runtime stops the world for a garbage
// collection, and the watchdog waits with everything else until the memory is already used.
// Neither RLIMIT_AS (Go reserves far more address space than it uses) nor RLIMIT_DATA (the
// runtime crashes in odd places when a mapping fails) does the job either.
func superviseRendering(limit uint64, args []string) int {
	renderer := exec.Command("/proc/self/exe", append([]string{"-render"}, args...)...)
	renderer.Stdin, renderer.Stdout, renderer.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := renderer.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "cannot start the renderer: %v\n", err)
		return exitRequest
	}
	done := make(chan error, 1)
	go func() { done <- renderer.Wait() }()
	statm := fmt.Sprintf("/proc/%d/statm", renderer.Process.Pid)
	limitPages := limit / uint64(os.Getpagesize())
	ticks := time.NewTicker(memoryCheckInterval)
	defer ticks.Stop()
	for {
		select {
		case err := <-done:
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				return exit.ExitCode()
			}
			return 0
		case <-ticks.C:
			if residentPages(statm) > limitPages {
				_ = renderer.Process.Kill()
				<-done
				fmt.Fprintf(os.Stderr, "the template used more than %d bytes of memory\n", limit)
				return exitOutOfMemory
			}
		}
	}
}

// residentPages is the second field of a /proc/<pid>/statm; 0 if it cannot be read.
func residentPages(statm string) uint64 {
	content, err := os.ReadFile(statm)
	if err != nil {
		return 0
	}
	fields := bytes.Fields(content)
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(string(fields[1]), 10, 64)
	return pages
}
