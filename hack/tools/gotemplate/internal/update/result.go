// Package update holds the changes an image update automation made, in the shape Flux gives
// its commit message templates (image-automation-controller, internal/update): templates
// written for Flux read the same fields and call the same methods here, and Go's own error
// messages name the same types (`update.Result`).
package update

import (
	"sort"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// ObjectIdentifier names one changed object; a kustomization.yaml, for one, has no name.
type ObjectIdentifier struct {
	yaml.ResourceIdentifier
}

// Change is one setter's edit: the value before and after it.
type Change struct {
	OldValue string
	NewValue string
	Setter   string
}

// ObjectChanges holds the changes made to each object of one file.
type ObjectChanges map[ObjectIdentifier][]Change

// Result holds every change an update made, by file, then object.
type Result struct {
	FileChanges map[string]ObjectChanges
}

// Add records changes to object in file.
func (r *Result) Add(file string, object ObjectIdentifier, changes ...Change) {
	if r.FileChanges == nil {
		r.FileChanges = map[string]ObjectChanges{}
	}
	if r.FileChanges[file] == nil {
		r.FileChanges[file] = ObjectChanges{}
	}
	r.FileChanges[file][object] = append(r.FileChanges[file][object], changes...)
}

// Changes lists each distinct change once, whatever file or object it was made in. Files go in
// name order and objects in the order text/template ranges over them, so that a message lists
// them the same way each time (Flux walks its maps in Go's random order).
func (r Result) Changes() []Change {
	seen := map[Change]bool{}
	var changes []Change
	for _, file := range sortedFiles(r.FileChanges) {
		objects := r.FileChanges[file]
		for _, object := range sortedObjects(objects) {
			for _, change := range objects[object] {
				if !seen[change] {
					seen[change] = true
					changes = append(changes, change)
				}
			}
		}
	}
	return changes
}

// Objects gathers the changes made to each object over all files.
func (r Result) Objects() ObjectChanges {
	merged := ObjectChanges{}
	for _, file := range sortedFiles(r.FileChanges) {
		for object, changes := range r.FileChanges[file] {
			merged[object] = append(merged[object], changes...)
		}
	}
	return merged
}

func sortedFiles(files map[string]ObjectChanges) []string {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// sortedObjects orders objects field by field (apiVersion, kind, name, namespace), as
// text/template orders struct map keys when it ranges over a map.
func sortedObjects(objects ObjectChanges) []ObjectIdentifier {
	ids := make([]ObjectIdentifier, 0, len(objects))
	for id := range objects {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := ids[i], ids[j]
		for _, pair := range [][2]string{
			{a.APIVersion, b.APIVersion}, {a.Kind, b.Kind}, {a.Name, b.Name}, {a.Namespace, b.Namespace},
		} {
			if pair[0] != pair[1] {
				return pair[0] < pair[1]
			}
		}
		return false
	})
	return ids
}
