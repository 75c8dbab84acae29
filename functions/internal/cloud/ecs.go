package cloud

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// maxTaskDefs bounds the process-lifetime task definition cache.
const maxTaskDefs = 1024

// MaxStopReason is the longest reason ECS StopTask accepts.
const MaxStopReason = 255

// TaskDefinition implements Cloud. Revisions are immutable, so an answer is
// kept for the life of the process.
func (a *AWS) TaskDefinition(ctx context.Context, arn string) (TaskDefinition, error) {
	if td, ok := a.taskDefs.Get(arn); ok {
		return td, nil
	}
	out, err := a.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(arn)})
	if err != nil {
		if apiCode(err) == codeECSClient {
			return TaskDefinition{}, fmt.Errorf("%w: ecs DescribeTaskDefinition %q: %w", ErrNotFound, arn, err)
		}
		return TaskDefinition{}, classify(err, fmt.Sprintf("ecs DescribeTaskDefinition %q", arn))
	}
	td := TaskDefinition{ARN: arn}
	if out.TaskDefinition != nil {
		for _, v := range out.TaskDefinition.Volumes {
			d := v.DockerVolumeConfiguration
			if d == nil {
				continue
			}
			td.Volumes = append(td.Volumes, DockerVolume{
				Name: aws.ToString(v.Name), Driver: aws.ToString(d.Driver), Scope: string(d.Scope),
				Autoprovision: aws.ToBool(d.Autoprovision), DriverOpts: d.DriverOpts,
				Mounters: mountersOf(out.TaskDefinition.ContainerDefinitions, aws.ToString(v.Name)),
			})
		}
	}
	a.taskDefs.Add(arn, td)
	return td, nil
}

// mountersOf lists the containers that mount the task volume named volume.
// A container without essential is essential (ECS's default).
func mountersOf(defs []ecstypes.ContainerDefinition, volume string) []Container {
	var out []Container
	for _, cd := range defs {
		for _, mp := range cd.MountPoints {
			if aws.ToString(mp.SourceVolume) == volume {
				out = append(out, Container{Name: aws.ToString(cd.Name), User: aws.ToString(cd.User), Essential: cd.Essential == nil || *cd.Essential})
				break
			}
		}
	}
	return out
}

func (a *AWS) listTasks(ctx context.Context, in *ecs.ListTasksInput) ([]string, error) {
	var arns []string
	for {
		out, err := a.ecs.ListTasks(ctx, in)
		if err != nil {
			return nil, err
		}
		arns = append(arns, out.TaskArns...)
		if aws.ToString(out.NextToken) == "" {
			return arns, nil
		}
		in.NextToken = out.NextToken
	}
}

// LiveTasks implements Cloud.
func (a *AWS) LiveTasks(ctx context.Context, cluster string) ([]Task, error) {
	s := a.sessionOf(ctx)
	if s == nil {
		return a.liveTasks(ctx, cluster)
	}
	s.mu.Lock()
	ts, ok := s.live[cluster]
	s.mu.Unlock()
	if ok {
		return ts, nil
	}
	v, err, _ := s.flight.Do("live/"+cluster, func() (any, error) { return a.liveTasks(ctx, cluster) })
	if err != nil {
		return nil, err
	}
	ts = v.([]Task)
	s.mu.Lock()
	s.live[cluster] = ts
	// ListTasks and DescribeTasks pages of 100 each.
	s.wholeCost[cluster] = 2 * max(1, (len(ts)+99)/100)
	s.mu.Unlock()
	return ts, nil
}

func (a *AWS) liveTasks(ctx context.Context, cluster string) ([]Task, error) {
	arns, err := a.listTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String(cluster), DesiredStatus: ecstypes.DesiredStatusRunning, MaxResults: aws.Int32(100)})
	if err != nil {
		return nil, classify(err, fmt.Sprintf("ecs ListTasks in %q", cluster))
	}
	return a.Tasks(ctx, cluster, arns)
}

// TasksOf implements Cloud: one scoped ListTasks (shared by the
// invocation's passes), then DescribeTasks for the tasks the invocation has
// not described yet.
func (a *AWS) TasksOf(ctx context.Context, cluster string, q TaskQuery) ([]Task, error) {
	arns, err := a.taskARNs(ctx, cluster, q)
	if err != nil {
		return nil, err
	}
	return a.Tasks(ctx, cluster, arns)
}

func (a *AWS) taskARNs(ctx context.Context, cluster string, q TaskQuery) ([]string, error) {
	if q.Desired == "" {
		q.Desired = string(ecstypes.DesiredStatusRunning)
	}
	k := fmt.Sprintf("%s|%s|%s|%s", cluster, q.Family, q.ContainerInstance, q.Desired)
	list := func() (any, error) {
		in := &ecs.ListTasksInput{Cluster: aws.String(cluster), DesiredStatus: ecstypes.DesiredStatus(q.Desired), MaxResults: aws.Int32(100)}
		if q.Family != "" {
			in.Family = aws.String(q.Family)
		}
		if q.ContainerInstance != "" {
			in.ContainerInstance = aws.String(q.ContainerInstance)
		}
		arns, err := a.listTasks(ctx, in)
		if apiCode(err) == codeECSInvalidParameter && q.ContainerInstance != "" {
			// ECS no longer knows the container instance (deregistered).
			return nil, fmt.Errorf("%w: container instance %q: %w", ErrNotFound, q.ContainerInstance, err)
		}
		return arns, classify(err, fmt.Sprintf("ecs ListTasks %s in %q", k, cluster))
	}
	s := a.sessionOf(ctx)
	if s == nil {
		v, err := list()
		if err != nil {
			return nil, err
		}
		return v.([]string), nil
	}
	s.mu.Lock()
	cached, ok := s.listed[k]
	partOfWhole := !ok && q.Desired == string(ecstypes.DesiredStatusRunning) && q.Family != ""
	again := partOfWhole && s.wholeAgain(cluster)
	s.mu.Unlock()
	if again {
		if _, err := a.LiveTasks(ctx, cluster); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	if partOfWhole {
		if s.wholeCost[cluster] > 0 {
			s.spared[cluster]++ // a lookup a whole listing serves (see wholeAgain)
		}
		// The invocation listed every live task of the cluster (a sweep):
		// a family's (and an instance's) live tasks are a part of it.
		if live, complete := s.live[cluster]; complete {
			cached, ok = []string{}, true
			for _, t := range live {
				if t.Family() == q.Family && (q.ContainerInstance == "" || t.ContainerInstanceARN == q.ContainerInstance) {
					cached = append(cached, t.ARN)
				}
			}
		}
	}
	s.mu.Unlock()
	if ok {
		return cached, nil
	}
	v, err, _ := s.flight.Do("list/"+k, list)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.listed[k] = v.([]string)
	s.mu.Unlock()
	return v.([]string), nil
}

// Tasks implements Cloud. Within an invocation a task is described once
// (the session keeps the answer until MaxAge).
func (a *AWS) Tasks(ctx context.Context, cluster string, ids []string) ([]Task, error) {
	s := a.sessionOf(ctx)
	if s == nil {
		return a.describeTasks(ctx, cluster, ids)
	}
	var out []Task
	var ask []string
	s.mu.Lock()
	for _, id := range ids {
		if t, ok := s.tasks[id]; ok {
			out = append(out, t)
		} else if t, ok := a.stopped.Get(id); ok {
			out = append(out, t)
		} else {
			ask = append(ask, id)
		}
	}
	s.mu.Unlock()
	if len(ask) > 0 {
		refs := make([]clusterRef, len(ask))
		for i, id := range ask {
			refs[i] = clusterRef{cluster, id}
		}
		got, err := a.tasksByID.GetAll(ctx, refs)
		if err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		s.mu.Lock()
		for _, r := range refs {
			t, ok := got[r]
			if !ok || seen[t.ARN] {
				continue
			}
			seen[t.ARN] = true
			s.tasks[t.ARN] = t
			s.tasks[TaskID(t.ARN)] = t
			out = append(out, t)
		}
		s.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ARN < out[j].ARN })
	return out, nil
}

// TaskID is the last path segment of a task ARN (or the id itself).
func TaskID(taskARN string) string {
	if i := strings.LastIndexByte(taskARN, '/'); i >= 0 {
		return taskARN[i+1:]
	}
	return taskARN
}

// clusterRef names a task (by ARN or id) or a container instance (by ARN)
// in a cluster: the keys of the batched describes.
type clusterRef struct{ cluster, id string }

// ecsDescribeMax: DescribeTasks and DescribeContainerInstances take at most
// 100 names (ECS API reference).
const ecsDescribeMax = 100

// byCluster groups refs' names by cluster, clusters sorted.
func byCluster(refs []clusterRef) ([]string, map[string][]string) {
	names := map[string][]string{}
	for _, r := range refs {
		names[r.cluster] = append(names[r.cluster], r.id)
	}
	clusters := make([]string, 0, len(names))
	for c := range names {
		clusters = append(clusters, c)
	}
	sort.Strings(clusters)
	return clusters, names
}

// describeTaskRefs answers a batch of tasks: one DescribeTasks per cluster;
// each task is keyed by its ARN and by its id, as callers name it either way.
func (a *AWS) describeTaskRefs(ctx context.Context, refs []clusterRef) (map[clusterRef]Task, error) {
	clusters, names := byCluster(refs)
	res := make(map[clusterRef]Task, 2*len(refs))
	for _, c := range clusters {
		ts, err := a.describeTasks(ctx, c, names[c])
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			res[clusterRef{c, t.ARN}] = t
			res[clusterRef{c, TaskID(t.ARN)}] = t
		}
	}
	return res, nil
}

// describeCIRefs answers a batch of container instances: one
// DescribeContainerInstances per cluster.
func (a *AWS) describeCIRefs(ctx context.Context, refs []clusterRef) (map[clusterRef]ContainerInstance, error) {
	clusters, names := byCluster(refs)
	res := make(map[clusterRef]ContainerInstance, len(refs))
	for _, c := range clusters {
		cis, err := a.describeContainerInstances(ctx, c, names[c])
		if err != nil {
			return nil, err
		}
		for _, ci := range cis {
			res[clusterRef{c, ci.ARN}] = ci
		}
	}
	return res, nil
}

func (a *AWS) describeTasks(ctx context.Context, cluster string, ids []string) ([]Task, error) {
	var out []Task
	for len(ids) > 0 {
		n := min(len(ids), 100)
		resp, err := a.ecs.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(cluster), Tasks: ids[:n]})
		if err != nil {
			return nil, classify(err, fmt.Sprintf("ecs DescribeTasks in %q", cluster))
		}
		for _, t := range resp.Tasks {
			task := fromECSTask(t)
			if task.LastStatus == "STOPPED" {
				a.stopped.Add(task.ARN, task)
			}
			a.taskHome.Add(task.ARN, Task{ARN: task.ARN, TaskDefinitionARN: task.TaskDefinitionARN,
				ContainerInstanceARN: task.ContainerInstanceARN, AZ: task.AZ, CreatedAt: task.CreatedAt, Group: task.Group})
			out = append(out, task)
		}
		ids = ids[n:]
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ARN < out[j].ARN })
	return out, nil
}

// TaskHomes implements Cloud: what never changes about the tasks, from the
// process's memory of earlier answers, describing only those it lacks.
func (a *AWS) TaskHomes(ctx context.Context, cluster string, ids []string) ([]Task, error) {
	var out []Task
	var ask []string
	for _, id := range ids {
		if t, ok := a.taskHome.Get(id); ok {
			out = append(out, t)
		} else {
			ask = append(ask, id)
		}
	}
	if len(ask) > 0 {
		got, err := a.Tasks(ctx, cluster, ask)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// ListTaskARNs implements Cloud: the scoped ListTasks alone (shared by
// the invocation), for callers that know some of the tasks already.
func (a *AWS) ListTaskARNs(ctx context.Context, cluster string, q TaskQuery) ([]string, error) {
	return a.taskARNs(ctx, cluster, q)
}

func fromECSTask(t ecstypes.Task) Task {
	return Task{
		ARN: aws.ToString(t.TaskArn), TaskDefinitionARN: aws.ToString(t.TaskDefinitionArn),
		ContainerInstanceARN: aws.ToString(t.ContainerInstanceArn), AZ: aws.ToString(t.AvailabilityZone),
		LastStatus: aws.ToString(t.LastStatus), DesiredStatus: aws.ToString(t.DesiredStatus),
		CreatedAt: aws.ToTime(t.CreatedAt), StartedAt: aws.ToTime(t.StartedAt), StoppedAt: aws.ToTime(t.StoppedAt),
		Version: t.Version, Group: aws.ToString(t.Group), StoppedReason: aws.ToString(t.StoppedReason),
	}
}

// ContainerInstanceHome implements Cloud.
func (a *AWS) ContainerInstanceHome(ctx context.Context, cluster, arn string) (ContainerInstance, error) {
	if ci, ok := a.ciHome.Get(arn); ok {
		return ci, nil
	}
	return a.ContainerInstance(ctx, cluster, arn)
}

// ContainerInstance implements Cloud.
func (a *AWS) ContainerInstance(ctx context.Context, cluster, arn string) (ContainerInstance, error) {
	s := a.sessionOf(ctx)
	if s != nil {
		s.mu.Lock()
		ci, ok := s.cis[arn]
		if !ok {
			// Not kept in the session: it would outlive MaxAge there.
			ci, ok = recent(a, a.recentCIs, arn)
		}
		s.mu.Unlock()
		if ok {
			return ci, nil
		}
	}
	ci, ok, err := a.cisByARN.Get(ctx, clusterRef{cluster, arn})
	if err != nil {
		return ContainerInstance{}, err
	}
	if !ok {
		return ContainerInstance{}, fmt.Errorf("%w: container instance %q in %q", ErrNotFound, arn, cluster)
	}
	if s != nil { // the batch's leader kept it in its own session
		s.mu.Lock()
		s.cis[arn] = ci
		s.mu.Unlock()
	}
	return ci, nil
}

// filterableID: an instance id that can stand in a cluster query
// expression as it is (no spaces, brackets or quotes).
var filterableID = regexp.MustCompile(`^[a-z]{1,2}-[0-9a-zA-Z]{1,32}$`)

// ContainerInstanceOf implements Cloud. Which container instance an EC2
// instance registered as never changes, so the process keeps it (its
// Status then empty: unknown, ContainerInstance reads it); an instance it
// has not seen costs one ListContainerInstances filtered by the cluster
// query language ("ec2InstanceId == i-…") and one describe, whatever the
// size of the cluster. A registration ECS has forgotten shows when a
// listing by it answers ErrNotFound.
func (a *AWS) ContainerInstanceOf(ctx context.Context, cluster, ec2InstanceID string) (ContainerInstance, error) {
	k := cluster + "/" + ec2InstanceID
	if ci, ok := a.ciOfEC2.Get(k); ok {
		if s := a.sessionOf(ctx); s != nil {
			s.mu.Lock()
			cur, described := s.cis[ci.ARN]
			if !described {
				cur, described = recent(a, a.recentCIs, ci.ARN)
			}
			s.mu.Unlock()
			if described {
				return cur, nil
			}
		}
		ci.Status, ci.AgentConnected = "", false // unknown: ContainerInstance reads it
		return ci, nil
	}
	if !filterableID.MatchString(ec2InstanceID) { // it goes into a query expression
		return ContainerInstance{}, fmt.Errorf("%w: %q is not an instance id", ErrNotFound, ec2InstanceID)
	}
	in := &ecs.ListContainerInstancesInput{Cluster: aws.String(cluster), Filter: aws.String("ec2InstanceId == " + ec2InstanceID)}
	out, err := a.ecs.ListContainerInstances(ctx, in)
	if err != nil {
		return ContainerInstance{}, classify(err, fmt.Sprintf("ecs ListContainerInstances %q in %q", ec2InstanceID, cluster))
	}
	if len(out.ContainerInstanceArns) == 0 {
		return ContainerInstance{}, fmt.Errorf("%w: no container instance of %q in %q", ErrNotFound, ec2InstanceID, cluster)
	}
	cis, err := a.describeContainerInstances(ctx, cluster, out.ContainerInstanceArns)
	if err != nil {
		return ContainerInstance{}, err
	}
	for _, ci := range cis {
		if ci.EC2InstanceID == ec2InstanceID {
			return ci, nil
		}
	}
	return ContainerInstance{}, fmt.Errorf("%w: no container instance of %q in %q", ErrNotFound, ec2InstanceID, cluster)
}

// ContainerInstances lists and describes every container instance of the
// cluster. Its cost grows with the cluster: for lookups by EC2 instance
// and for operators.
func (a *AWS) ContainerInstances(ctx context.Context, cluster string) ([]ContainerInstance, error) {
	in := &ecs.ListContainerInstancesInput{Cluster: aws.String(cluster), MaxResults: aws.Int32(100)}
	var arns []string
	for {
		out, err := a.ecs.ListContainerInstances(ctx, in)
		if err != nil {
			return nil, classify(err, fmt.Sprintf("ecs ListContainerInstances in %q", cluster))
		}
		arns = append(arns, out.ContainerInstanceArns...)
		if aws.ToString(out.NextToken) == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	return a.describeContainerInstances(ctx, cluster, arns)
}

func (a *AWS) describeContainerInstances(ctx context.Context, cluster string, arns []string) ([]ContainerInstance, error) {
	var out []ContainerInstance
	for len(arns) > 0 {
		n := min(len(arns), 100)
		resp, err := a.ecs.DescribeContainerInstances(ctx, &ecs.DescribeContainerInstancesInput{Cluster: aws.String(cluster), ContainerInstances: arns[:n]})
		if err != nil {
			return nil, classify(err, fmt.Sprintf("ecs DescribeContainerInstances in %q", cluster))
		}
		for _, c := range resp.ContainerInstances {
			ci := ContainerInstance{
				ARN: aws.ToString(c.ContainerInstanceArn), EC2InstanceID: aws.ToString(c.Ec2InstanceId),
				Status: aws.ToString(c.Status), AgentConnected: c.AgentConnected,
			}
			for _, at := range c.Attributes {
				if aws.ToString(at.Name) == "ecs.availability-zone" {
					ci.AZ = aws.ToString(at.Value)
				}
			}
			out = append(out, ci)
		}
		arns = arns[n:]
	}
	at := a.opts.Now()
	for _, ci := range out {
		a.recentCIs.Add(ci.ARN, answered[ContainerInstance]{ci, at})
		home := ci
		home.Status, home.AgentConnected = "", false
		a.ciHome.Add(ci.ARN, home)
		if ci.EC2InstanceID != "" && ci.Status != "INACTIVE" {
			a.ciOfEC2.Add(cluster+"/"+ci.EC2InstanceID, ci)
		}
	}
	if s := a.sessionOf(ctx); s != nil {
		s.mu.Lock()
		for _, ci := range out {
			s.cis[ci.ARN] = ci
		}
		s.mu.Unlock()
	}
	return out, nil
}

// StopTask implements Cloud; the reason is cut to what ECS accepts.
func (a *AWS) StopTask(ctx context.Context, cluster, taskARN, reason string) error {
	_, err := a.ecs.StopTask(ctx, &ecs.StopTaskInput{
		Cluster: aws.String(cluster), Task: aws.String(taskARN), Reason: aws.String(TruncateReason(reason)),
	}, ecsRetryer(a.retry.stopTask))
	if s := a.sessionOf(ctx); s != nil {
		s.mu.Lock()
		delete(s.live, cluster)
		delete(s.tasks, taskARN)
		delete(s.tasks, TaskID(taskARN))
		s.mu.Unlock()
	}
	return classify(err, fmt.Sprintf("ecs StopTask %q", taskARN))
}

// Service implements Cloud (one DescribeServices; the invocation keeps it).
func (a *AWS) Service(ctx context.Context, cluster, name string) (Service, error) {
	k := cluster + "/" + name
	s := a.sessionOf(ctx)
	if s != nil {
		s.mu.Lock()
		sv, ok := s.services[k]
		s.mu.Unlock()
		if ok {
			return sv, nil
		}
	}
	out, err := a.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(cluster), Services: []string{name}})
	if err != nil {
		if apiCode(err) == codeECSServiceNotFound {
			return Service{}, fmt.Errorf("%w: service %q: %w", ErrNotFound, name, err)
		}
		return Service{}, classify(err, fmt.Sprintf("ecs DescribeServices %q in %q", name, cluster))
	}
	for _, d := range out.Services {
		if aws.ToString(d.ServiceName) != name {
			continue
		}
		sv := Service{Name: name, DesiredCount: d.DesiredCount, MinimumHealthyPercent: 100, MaximumPercent: 200}
		if c := d.DeploymentConfiguration; c != nil {
			if c.MinimumHealthyPercent != nil {
				sv.MinimumHealthyPercent = *c.MinimumHealthyPercent
			}
			if c.MaximumPercent != nil {
				sv.MaximumPercent = *c.MaximumPercent
			}
		}
		if s != nil {
			s.mu.Lock()
			s.services[k] = sv
			s.mu.Unlock()
		}
		return sv, nil
	}
	return Service{}, fmt.Errorf("%w: service %q in %q", ErrNotFound, name, cluster)
}

// TruncateReason cuts s to MaxStopReason bytes on a rune boundary.
func TruncateReason(s string) string {
	if len(s) <= MaxStopReason {
		return s
	}
	cut := MaxStopReason
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
