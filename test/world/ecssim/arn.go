package ecssim

import (
	"fmt"
	"strings"
)

// ARNs are written in ECS's long format (resource/<cluster>/<id>) and read
// in every format ECS accepts: the bare id or name, the short ARN
// (resource/<id>) and the long one.

func (s *Server) arn(resource string) string {
	return fmt.Sprintf("arn:aws:ecs:%s:%s:%s", s.opts.Region, s.opts.Account, resource)
}

func (s *Server) clusterArn(name string) string { return s.arn("cluster/" + name) }

func (s *Server) taskArn(cluster, id string) string {
	return s.arn("task/" + cluster + "/" + id)
}

func (s *Server) instanceArn(cluster, id string) string {
	return s.arn("container-instance/" + cluster + "/" + id)
}

func (s *Server) serviceArn(cluster, name string) string {
	return s.arn("service/" + cluster + "/" + name)
}

func (s *Server) containerArn(cluster, taskID, id string) string {
	return s.arn("container/" + cluster + "/" + taskID + "/" + id)
}

func (s *Server) taskDefArn(family string, revision int32) string {
	return s.arn(fmt.Sprintf("task-definition/%s:%d", family, revision))
}

// resourceID reads an id, a short ARN or a long ARN of the given resource
// type. cluster is "" when the input does not name one (id or short ARN).
// ok is false when the input is an ARN of another resource type or region.
func (s *Server) resourceID(resource, in string) (cluster, id string, ok bool) {
	if !strings.HasPrefix(in, "arn:") {
		return "", in, in != "" && !strings.Contains(in, "/")
	}
	prefix := s.arn(resource + "/")
	rest, found := strings.CutPrefix(in, prefix)
	if !found || rest == "" {
		return "", "", false
	}
	if c, i, long := strings.Cut(rest, "/"); long {
		return c, i, c != "" && i != "" && !strings.Contains(i, "/")
	}
	return "", rest, true
}

// clusterName reads a cluster name or ARN; "" means the default cluster.
func (s *Server) clusterName(in string) (string, bool) {
	if in == "" {
		return "default", true
	}
	if !strings.HasPrefix(in, "arn:") {
		return in, true
	}
	name, found := strings.CutPrefix(in, s.arn("cluster/"))
	return name, found && name != "" && !strings.Contains(name, "/")
}

// taskDefRef splits family, family:revision or a task definition ARN.
// revision 0 means the latest ACTIVE revision.
func (s *Server) taskDefRef(in string) (family string, revision int32, err error) {
	ref := in
	if strings.HasPrefix(in, "arn:") {
		var found bool
		ref, found = strings.CutPrefix(in, s.arn("task-definition/"))
		if !found {
			return "", 0, clientError("Unable to describe task definition.")
		}
	}
	family, rev, hasRev := strings.Cut(ref, ":")
	if !familyPattern.MatchString(family) {
		return "", 0, clientError("Unable to describe task definition.")
	}
	if !hasRev {
		if strings.HasPrefix(in, "arn:") {
			return "", 0, clientError("Unable to describe task definition.")
		}
		return family, 0, nil
	}
	var n int32
	if _, scanErr := fmt.Sscanf(rev, "%d", &n); scanErr != nil || n < 1 || fmt.Sprint(n) != rev {
		return "", 0, clientError("Invalid revision number. Number: %s", rev)
	}
	return family, n, nil
}
