package ec2sim

import (
	"context"
	"net/url"
	"strconv"
	"strings"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

const maxTags = 50 // per resource (EC2 user guide, "Tag restrictions")

func itoa(n int32) string { return strconv.Itoa(int(n)) }
func btoa(b bool) string  { return strconv.FormatBool(b) }

func checkTag(k, v string) error {
	switch {
	case k == "":
		return errInvalidValue("Tag key must not be empty")
	case len(k) > 128:
		return errInvalidValue("Tag key exceeds the maximum length of 128 characters")
	case len(v) > 256:
		return errInvalidValue("Tag value exceeds the maximum length of 256 characters")
	case strings.HasPrefix(strings.ToLower(k), "aws:"):
		return errInvalidValue("Tag keys starting with 'aws:' are reserved for internal use")
	}
	return nil
}

// tagSpecifications reads TagSpecification.N.ResourceType /
// .Tag.M.Key/Value for a create of resourceType.
func tagSpecifications(form url.Values, resourceType string) (map[string]string, error) {
	tags := map[string]string{}
	for _, spec := range awsproto.Members(form, "TagSpecification") {
		rt := spec.Get("ResourceType")
		if rt != resourceType {
			return nil, errInvalidValue("'%s' is not a valid taggable resource type for this operation.", rt)
		}
		for _, t := range awsproto.Members(spec, "Tag") {
			k, v := t.Get("Key"), t.Get("Value")
			if err := checkTag(k, v); err != nil {
				return nil, err
			}
			tags[k] = v
		}
	}
	if len(tags) > maxTags {
		return nil, awsproto.BadRequest("TagLimitExceeded", "The maximum number of tags per resource is %d.", maxTags)
	}
	if len(tags) == 0 {
		return nil, nil
	}
	return tags, nil
}

// tagsOf finds the tag map of a volume, snapshot or instance, creating it
// when asked. Caller holds s.mu.
func (s *Server) tagsOf(id string) (*map[string]string, error) {
	prefix, _, _ := strings.Cut(id, "-")
	switch prefix {
	case "vol":
		if v := s.volumes[id]; v != nil {
			return &v.tags, nil
		}
		return nil, errVolumeNotFound(id)
	case "snap":
		if sn := s.snapshots[id]; sn != nil {
			return &sn.tags, nil
		}
		return nil, errSnapshotNotFound(id)
	case "i":
		if in := s.instances[id]; in != nil {
			return &in.tags, nil
		}
		return nil, errInstanceNotFound(id)
	}
	return nil, awsproto.BadRequest("InvalidID", "The ID '%s' is not valid", id)
}

func (s *Server) createTags(_ context.Context, form url.Values) (any, error) {
	ids := awsproto.List(form, "ResourceId")
	if len(ids) == 0 {
		return nil, errMissing("ResourceId")
	}
	type kv struct{ k, v string }
	var tags []kv
	for _, t := range awsproto.Members(form, "Tag") {
		k, v := t.Get("Key"), t.Get("Value")
		if err := checkTag(k, v); err != nil {
			return nil, err
		}
		tags = append(tags, kv{k, v})
	}
	if len(tags) == 0 {
		return nil, errMissing("Tag")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	maps := make([]*map[string]string, len(ids))
	for i, id := range ids { // all or nothing, as EC2
		m, err := s.tagsOf(id)
		if err != nil {
			return nil, err
		}
		n := len(*m)
		for _, t := range tags {
			if _, ok := (*m)[t.k]; !ok {
				n++
			}
		}
		if n > maxTags {
			return nil, awsproto.BadRequest("TagLimitExceeded", "The maximum number of tags per resource is %d.", maxTags)
		}
		maps[i] = m
	}
	for _, m := range maps {
		if *m == nil {
			*m = map[string]string{}
		}
		for _, t := range tags {
			(*m)[t.k] = t.v
		}
	}
	return &returnResponse{Return: true}, nil
}

// deleteTags removes the named tags; a tag given with a Value is removed
// only if its value matches (an empty Value matches only an empty value);
// no Tag at all removes every tag.
func (s *Server) deleteTags(_ context.Context, form url.Values) (any, error) {
	ids := awsproto.List(form, "ResourceId")
	if len(ids) == 0 {
		return nil, errMissing("ResourceId")
	}
	tags := awsproto.Members(form, "Tag")
	s.mu.Lock()
	defer s.mu.Unlock()
	maps := make([]*map[string]string, len(ids))
	for i, id := range ids {
		m, err := s.tagsOf(id)
		if err != nil {
			return nil, err
		}
		maps[i] = m
	}
	for _, m := range maps {
		if len(tags) == 0 {
			*m = nil
			continue
		}
		for _, t := range tags {
			k := t.Get("Key")
			cur, ok := (*m)[k]
			if _, withValue := t["Value"]; ok && (!withValue || t.Get("Value") == cur) {
				delete(*m, k)
			}
		}
	}
	return &returnResponse{Return: true}, nil
}
