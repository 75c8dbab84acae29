package ssmsim

import (
	"embed"
	"fmt"
	"path"
	"strings"
)

// managedFS holds the AWS-managed documents a user of this world reaches
// for, each as SSM's GetDocument returns its content. AWS-RunShellScript is
// the content shown by the aws CLI's own example for "aws ssm get-document
// --name AWS-RunShellScript" (awscli examples/ssm/get-document.rst).
//
//go:embed managed/*.json
var managedFS embed.FS

// ownerAmazon is the Owner of AWS's documents (ListDocuments, DescribeDocument).
const ownerAmazon = "Amazon"

// addManagedDocuments adds every document of managedFS, owned by Amazon.
func (s *Server) addManagedDocuments() error {
	entries, err := managedFS.ReadDir("managed")
	if err != nil {
		return err
	}
	for _, e := range entries {
		raw, err := managedFS.ReadFile(path.Join("managed", e.Name()))
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(e.Name(), ".json")
		d, err := parseDocument(name, string(raw))
		if err != nil {
			return fmt.Errorf("ssmsim: AWS document %s: %w", name, err)
		}
		d.owner, d.created = ownerAmazon, s.started
		s.documents[name] = d
	}
	return nil
}
