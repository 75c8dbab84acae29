package eventsrc

import (
	"regexp"
	"strconv"
)

// ARNs as ECS writes them. Task and container instance ARNs come in two
// formats: the old "task/<id>" (before the 2018 long ARN format) and the
// current "task/<cluster>/<id>"; events from both are still in the wild.
// The patterns are strict on purpose: every id that passes is safe to log and
// to hand to an AWS API.
const (
	arnPrefix   = `^arn:aws[a-z-]{0,20}:ecs:[a-z0-9-]{1,32}:[0-9]{12}:`
	clusterName = `[a-zA-Z0-9_-]{1,255}`
	resourceID  = `[a-zA-Z0-9-]{1,64}`
)

var (
	clusterARN           = regexp.MustCompile(arnPrefix + `cluster/(` + clusterName + `)$`)
	taskARN              = regexp.MustCompile(arnPrefix + `task/(?:(` + clusterName + `)/)?(` + resourceID + `)$`)
	containerInstanceARN = regexp.MustCompile(arnPrefix + `container-instance/(?:(` + clusterName + `)/)?(` + resourceID + `)$`)
	taskDefinitionARN    = regexp.MustCompile(arnPrefix + `task-definition/` + clusterName + `:([0-9]{1,9})$`)
	ec2InstanceID        = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)
	volumeARN            = regexp.MustCompile(`^arn:aws[a-z-]{0,20}:ec2:[a-z0-9-]{1,32}:[0-9a-z]{0,12}:volume/(.*)$`)
)

// clusterFromARN returns the cluster name of a cluster ARN.
func clusterFromARN(arn string) (string, bool) {
	m := clusterARN.FindStringSubmatch(arn)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// checkScopedARN validates a task or container instance ARN; in the long
// format the cluster it names must be the event's cluster.
func checkScopedARN(re *regexp.Regexp, arn, cluster string) bool {
	m := re.FindStringSubmatch(arn)
	if m == nil {
		return false
	}
	return m[1] == "" || m[1] == cluster
}

// taskID is the last component of a task ARN (either format).
func taskID(arn string) string {
	if m := taskARN.FindStringSubmatch(arn); m != nil {
		return m[2]
	}
	return ""
}

func validTaskDefinitionARN(arn string) bool {
	m := taskDefinitionARN.FindStringSubmatch(arn)
	if m == nil {
		return false
	}
	rev, err := strconv.Atoi(m[1])
	return err == nil && rev > 0
}
