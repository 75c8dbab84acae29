package samlocal

import (
	"fmt"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/tether-ecs/tether/test/world/cfntemplate"
)

// The world's instances are Linux. A Command document step whose
// precondition names another platform is skipped there by SSM ("Step
// execution skipped due to unsatisfied preconditions"; SSM User Guide,
// "Command document plugin reference", precondition), so the world's SSM,
// which runs documents of one aws:runShellScript step, gets each document
// without such steps; every step left out is listed in Ignored.
const worldPlatform = "Linux"

// platformOf reads a step's precondition: "" when it has none, else the
// platformType it requires. Any other precondition is refused.
func platformOf(doc string, step *yaml.Node) (string, error) {
	pre := cfntemplate.Child(step, "precondition")
	if pre == nil {
		return "", nil
	}
	eq := cfntemplate.Child(pre, "StringEquals")
	if pre.Kind != yaml.MappingNode || len(pre.Content) != 2 || eq == nil || eq.Kind != yaml.SequenceNode ||
		len(eq.Content) != 2 || eq.Content[0].Value != "platformType" {
		return "", fmt.Errorf("%s: a step's precondition other than StringEquals [platformType, P]: %w", doc, ErrUnsupported)
	}
	return eq.Content[1].Value, nil
}

// linuxDocuments returns the template with each SSM document's steps for
// other platforms left out (as SSM skips them on the world's Linux
// instances), and records what it left out.
func (t *Template) linuxDocuments() (*cfntemplate.Template, error) {
	out := *t.cfn
	out.Resources = slices.Clone(t.cfn.Resources)
	for i, r := range out.Resources {
		if r.Type != "AWS::SSM::Document" {
			continue
		}
		content := r.Property("Content")
		steps := cfntemplate.Child(content, "mainSteps")
		if steps == nil || steps.Kind != yaml.SequenceNode {
			continue // ssmsim refuses it with its own reason
		}
		var kept []*yaml.Node
		for _, step := range steps.Content {
			platform, err := platformOf(r.LogicalID, step)
			if err != nil {
				return nil, err
			}
			if platform == "" || platform == worldPlatform {
				kept = append(kept, step)
				continue
			}
			name := "?"
			if n := cfntemplate.Child(step, "name"); n != nil {
				name = n.Value
			}
			t.ignored = append(t.ignored, Ignored{LogicalID: r.LogicalID, Type: r.Type, Property: "Content.mainSteps." + name,
				Reason: fmt.Sprintf("runs only on %s instances (precondition platformType); SSM skips it on the world's %s instances", platform, worldPlatform)})
		}
		var envVars []string
		for key, p := range cfntemplate.Pairs(cfntemplate.Child(content, "parameters")) {
			if it := cfntemplate.Child(p, "interpolationType"); it != nil && it.Value == "ENV_VAR" {
				envVars = append(envVars, key.Value)
			}
		}
		if len(envVars) > 0 {
			t.ignored = append(t.ignored, Ignored{LogicalID: r.LogicalID, Type: r.Type, Property: "Content.parameters.*.interpolationType",
				Reason: fmt.Sprintf("the world's SSM sets no SSM_<Name> variables (ENV_VAR: %v); it substitutes {{ Name }} into the script, as SSM Agent before 3.3.2746.0 does", envVars)})
		}
		if len(kept) == len(steps.Content) {
			continue
		}
		props := clone(r.Properties)
		cfntemplate.Child(cfntemplate.Child(props, "Content"), "mainSteps").Content = kept
		r.Properties = props
		out.Resources[i] = r
	}
	return &out, nil
}

// clone copies a YAML node tree (aliases stay shared).
func clone(n *yaml.Node) *yaml.Node {
	if n == nil {
		return nil
	}
	c := *n
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, child := range n.Content {
		c.Content[i] = clone(child)
	}
	return &c
}
