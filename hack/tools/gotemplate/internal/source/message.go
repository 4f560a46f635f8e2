// Package source renders commit messages as Flux's image-automation-controller does
// (internal/source): Go's text/template with Sprig's hermetic functions, over the same data.
// The package is named as Flux's is so that Go's errors name the same types
// (`can't evaluate field X in type source.TemplateData`).
package source

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weir/hack/tools/gotemplate/internal/update"
)

// DefaultMessage is the commit message when the automation has no template.
const DefaultMessage = "Update from image update automation"

// TemplateName is the name Go's errors give the template ("template: commit message:1: ...").
const TemplateName = "commit message"

// TemplateData is what a commit message template is executed on.
type TemplateData struct {
	AutomationObject types.NamespacedName
	Changed          update.Result
	Values           map[string]string
}

// removedFields are fields of older API versions that Flux removed; a template using one gets
// an error that says what to use instead, not just Go's "can't evaluate field".
var removedFields = []struct{ goError, field, instead string }{
	{"can't evaluate field Updated in type source.TemplateData", ".Updated", "'.Changed'"},
	{
		"can't evaluate field ImageResult in type update.Result", ".Changed.ImageResult",
		"'.Changed.FileChanges' or '.Changed.Objects'",
	},
}

const templateDocs = "https://fluxcd.io/flux/components/image/imageupdateautomations/#message-template"

// Render executes messageTemplate (DefaultMessage when empty) on data into out. Sprig's
// non-hermetic functions (dates, random values, the environment, DNS) are left out, as Flux
// leaves them out, so a message depends only on the template and the data.
func Render(out io.Writer, messageTemplate string, data TemplateData) error {
	if messageTemplate == "" {
		messageTemplate = DefaultMessage
	}
	parsed, err := template.New(TemplateName).Funcs(sprig.HermeticTxtFuncMap()).Parse(messageTemplate)
	if err != nil {
		return err
	}
	err = parsed.Execute(out, data)
	var execErr template.ExecError
	if errors.As(err, &execErr) {
		for _, removed := range removedFields {
			if strings.Contains(err.Error(), removed.goError) {
				return fmt.Errorf("the template uses '%s', which the API no longer has: use %s instead (%s)",
					removed.field, removed.instead, templateDocs)
			}
		}
	}
	return err
}
