// Command gotemplate renders an ImageUpdateAutomation's commit message template with Go's
// text/template, as Flux's image-automation-controller does, for weir's image automation
// controller (image_automation/message.py), so that templates written for Flux render the same.
//
// It reads one JSON request on standard input:
//
//	{"template": "...", "data": {
//	  "AutomationObject": {"Namespace": "...", "Name": "..."},
//	  "Changed": {"FileChanges": {"<file>": [
//	    {"Object": {"APIVersion": "...", "Kind": "...", "Name": "...", "Namespace": "..."},
//	     "Changes": [{"OldValue": "...", "NewValue": "...", "Setter": "..."}]}]}},
//	  "Values": {"<key>": "<value>"}}}
//
// and writes the message to standard output. Exit codes: 1, the template cannot be parsed or
// executed, or its message is too long (Go's error on standard error, one line); 2, the Go
// runtime's own (a crash); 3, the request is malformed; 4, rendering used more memory than
// allowed (memory.go).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/kustomize/kyaml/yaml"

	"github.com/weir/hack/tools/gotemplate/internal/source"
	"github.com/weir/hack/tools/gotemplate/internal/update"
)

const (
	exitTemplate = 1
	exitRequest  = 3
)

// maxRequestBytes bounds the request: a template and the changes of one update.
const maxRequestBytes = 16 << 20

type request struct {
	Template string      `json:"template"`
	Data     requestData `json:"data"`
}

type requestData struct {
	AutomationObject types.NamespacedName
	Changed          struct {
		FileChanges map[string][]objectChanges
	}
	Values map[string]string
}

type objectChanges struct {
	Object struct {
		APIVersion, Kind, Name, Namespace string
	}
	Changes []update.Change
}

func main() {
	maxOutput := flag.Int("max-output-bytes", 1<<20, "refuse a message longer than this")
	maxMemory := flag.Uint64("max-memory-bytes", 256<<20, "the most memory rendering may use")
	render := flag.Bool("render", false, "render here (set by the process that watches memory)")
	flag.Parse()
	if !*render {
		os.Exit(superviseRendering(*maxMemory, os.Args[1:]))
	}

	data, messageTemplate, err := readRequest(os.Stdin)
	if err != nil {
		fail(exitRequest, "bad request: "+err.Error())
	}
	out := &cappedBuffer{limit: *maxOutput}
	if err := source.Render(out, messageTemplate, data); err != nil {
		fail(exitTemplate, err.Error())
	}
	if _, err := os.Stdout.Write(out.Bytes()); err != nil {
		fail(exitRequest, "cannot write the message: "+err.Error())
	}
}

func readRequest(in io.Reader) (source.TemplateData, string, error) {
	raw, err := io.ReadAll(io.LimitReader(in, maxRequestBytes+1))
	if err != nil {
		return source.TemplateData{}, "", err
	}
	if len(raw) > maxRequestBytes {
		return source.TemplateData{}, "", fmt.Errorf("longer than %d bytes", maxRequestBytes)
	}
	decoder := json.NewDecoder(bytes.NewReader(raw))
	// A field the data has no place for is a mistake of the caller, not something to drop.
	decoder.DisallowUnknownFields()
	var req request
	if err := decoder.Decode(&req); err != nil {
		return source.TemplateData{}, "", err
	}
	if decoder.More() {
		return source.TemplateData{}, "", errors.New("more than one JSON value")
	}
	data := source.TemplateData{AutomationObject: req.Data.AutomationObject, Values: req.Data.Values}
	for file, objects := range req.Data.Changed.FileChanges {
		for _, object := range objects {
			id := update.ObjectIdentifier{ResourceIdentifier: yaml.ResourceIdentifier{
				TypeMeta: yaml.TypeMeta{APIVersion: object.Object.APIVersion, Kind: object.Object.Kind},
				NameMeta: yaml.NameMeta{Name: object.Object.Name, Namespace: object.Object.Namespace},
			}}
			data.Changed.Add(file, id, object.Changes...)
		}
	}
	return data, req.Template, nil
}

// cappedBuffer keeps what the template writes, up to limit bytes; past it the write fails,
// which stops the template there.
type cappedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, fmt.Errorf("the message is longer than %d bytes", b.limit)
	}
	return b.Buffer.Write(p)
}

func fail(code int, message string) {
	// One line: the caller shows it as it is.
	fmt.Fprintln(os.Stderr, strings.ReplaceAll(message, "\n", " "))
	os.Exit(code)
}
