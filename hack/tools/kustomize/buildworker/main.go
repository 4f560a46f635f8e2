// Command kustomize-build-worker serves `kustomize build` to the kustomize controller over a
// pipe, with kustomize's own api package (the version pinned in ../go.mod, as the kustomize
// binary is) and a filesystem confined to the artifact being built.
//
// Protocol: one JSON request per line on stdin, {"root": "/abs/artifact", "dir": "/abs/dir"};
// for each, one JSON header line on stdout, {"size": N} followed by N bytes of YAML, or
// {"error": "message"}. One build at a time; the controller runs several workers.
//
// Confinement does not depend on how a kustomization spells its keys: every file kustomize
// reads goes through confinedFS, which refuses any path that resolves (symlinks included)
// outside the request's root. Remote bases are refused unless -allow-remote: remote files
// by the HTTP transport, git clones by a git that only says no.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
)

// The largest request line: two paths.
const maxRequestBytes = 64 * 1024

type request struct {
	Root string `json:"root"`
	Dir  string `json:"dir"`
}

type header struct {
	Size  *int   `json:"size,omitempty"`
	Error string `json:"error,omitempty"`
}

func main() {
	// Invoked as "git" (the link put first on PATH without -allow-remote): refuse.
	if filepath.Base(os.Args[0]) == "git" {
		refuseGit(os.Args[1:])
	}
	allowRemote := flag.Bool("allow-remote", false, "fetch remote bases and files")
	memoryLimit := flag.Int64("memory-limit", 0, "resident memory limit in bytes (0: none)")
	flag.Parse()
	log.SetFlags(0)
	dieWithParent()
	if *memoryLimit > 0 {
		limitMemory(*memoryLimit)
	}
	// Remote bases are cloned under TMPDIR (a directory of this worker's own, removed with
	// it): the only place outside the artifact that builds may read.
	clones, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		log.Fatalf("cannot resolve TMPDIR: %v", err)
	}
	if *allowRemote {
		// Not file://: a clone of a repository on this host would read outside the artifact.
		os.Setenv("GIT_ALLOW_PROTOCOL", "http:https:ssh:git")
	} else if err := refuseRemote(clones); err != nil {
		log.Fatalf("cannot refuse remote bases: %v", err)
	}
	if err := serve(os.Stdin, os.Stdout, clones); err != nil {
		log.Fatalf("%v", err)
	}
}

func serve(in io.Reader, out io.Writer, clones string) error {
	reader := bufio.NewReaderSize(in, maxRequestBytes)
	writer := bufio.NewWriterSize(out, 1<<20)
	for {
		line, err := reader.ReadSlice('\n')
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading a request: %w", err)
		}
		var req request
		if err := json.Unmarshal(line, &req); err != nil {
			return fmt.Errorf("malformed request: %w", err)
		}
		output, buildErr := build(req, clones)
		if err := respond(writer, output, buildErr); err != nil {
			return err
		}
	}
}

func build(req request, clones string) ([]byte, error) {
	fs, err := newConfinedFS(req.Root, clones)
	if err != nil {
		return nil, err
	}
	options := krusty.MakeDefaultOptions()
	// Files may come from anywhere in the artifact, as in Flux; confinedFS keeps them there.
	options.LoadRestrictions = types.LoadRestrictionsNone
	// Objects come out in the order the kustomize binary gives them (its legacy order unless
	// the kustomization has sortOptions).
	options.Reorder = krusty.ReorderOptionUnspecified
	resources, err := krusty.MakeKustomizer(options).Run(fs, req.Dir)
	if err != nil {
		return nil, err
	}
	return resources.AsYaml()
}

func respond(w *bufio.Writer, output []byte, buildErr error) error {
	var h header
	if buildErr != nil {
		h.Error = buildErr.Error()
	} else {
		size := len(output)
		h.Size = &size
	}
	line, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return err
	}
	if buildErr == nil {
		if _, err := w.Write(output); err != nil {
			return err
		}
	}
	return w.Flush()
}

// refuseRemote makes every remote load fail with a message saying why: HTTP(S) files through
// the default transport, git clones through a "git" that refuses, first on PATH.
func refuseRemote(tmp string) error {
	http.DefaultTransport = refusingTransport{}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir := filepath.Join(tmp, "bin")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	link := filepath.Join(dir, "git")
	if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Symlink(self, link); err != nil {
		return err
	}
	return os.Setenv("PATH", dir)
}

const remoteRefused = "remote bases are not allowed (--no-remote-bases): resources must be " +
	"files of the source artifact"

type refusingTransport struct{}

func (refusingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("%s (refused %s)", remoteRefused, r.URL.Redacted())
}

// refuseGit is the refusing git: kustomize runs "git init" and "git remote add" in an empty
// directory of its own before it fetches, so those may succeed; anything else fails.
func refuseGit(args []string) {
	if len(args) > 0 && (args[0] == "init" || args[0] == "remote") {
		os.Exit(0)
	}
	url := ""
	if len(args) > 2 && args[0] == "fetch" {
		url = " " + args[len(args)-2]
	}
	fmt.Fprintf(os.Stderr, "%s (refused git clone%s)\n", remoteRefused, strings.TrimRight(url, " "))
	os.Exit(1)
}

// dieWithParent has the kernel kill this worker when the controller that started it dies,
// even in the middle of a build that no longer reads its requests.
func dieWithParent() {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); errno != 0 {
		log.Fatalf("prctl(PR_SET_PDEATHSIG): %v", errno)
	}
	if os.Getppid() == 1 {
		os.Exit(1) // the parent died before the line above
	}
}
