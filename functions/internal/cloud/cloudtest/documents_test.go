package cloudtest

import (
	"path/filepath"
	"testing"

	"github.com/tether-ecs/tether/test/world/cfntemplate"
)

// The fake checks SendCommand's parameters as SSM would against
// template.yaml's documents; its copy of their declarations must be the
// template's: the same names, allowedPatterns and defaults.
func TestDocumentParamsAreTheTemplates(t *testing.T) {
	tpl, err := cfntemplate.Load(filepath.Join("..", "..", "..", "..", "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for logicalID, unmount := range map[string]bool{"MountDocument": false, "UnmountDocument": true} {
		res, ok := tpl.Resource(logicalID)
		if !ok {
			t.Fatalf("template.yaml has no %s", logicalID)
		}
		declared := cfntemplate.Child(res.Property("Content"), "parameters")
		fake := documentParams[unmount]
		seen := map[string]bool{}
		for key, p := range cfntemplate.Pairs(declared) {
			name := key.Value
			seen[name] = true
			mine, ok := fake[name]
			if !ok {
				t.Errorf("%s declares %s; cloudtest does not", logicalID, name)
				continue
			}
			pattern := ""
			if n := cfntemplate.Child(p, "allowedPattern"); n != nil {
				pattern = n.Value
			}
			if mine.pattern.String() != pattern {
				t.Errorf("%s.%s: allowedPattern %q, cloudtest's %q", logicalID, name, pattern, mine.pattern)
			}
			if optional := cfntemplate.Child(p, "default") != nil; optional != mine.optional {
				t.Errorf("%s.%s: has a default %v, cloudtest's optional %v", logicalID, name, optional, mine.optional)
			}
		}
		for name := range fake {
			if !seen[name] {
				t.Errorf("cloudtest declares %s for %s; template.yaml does not", name, logicalID)
			}
		}
	}
}
