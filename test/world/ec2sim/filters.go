package ec2sim

import (
	"encoding/base64"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

type filter struct {
	name   string
	values []string
}

// parseFilters reads Filter.N.Name / Filter.N.Value.M and rejects names
// the resource does not support: an unknown filter is an error (EC2 says
// InvalidParameterValue), never "match everything".
func parseFilters(form url.Values, supported map[string]bool) ([]filter, error) {
	var out []filter
	for _, m := range awsproto.Members(form, "Filter") {
		name := m.Get("Name")
		if name == "" {
			return nil, errMissing("Filter.Name")
		}
		if !supported[name] && !strings.HasPrefix(name, "tag:") {
			return nil, errInvalidValue("The filter '%s' is invalid", name)
		}
		vals := awsproto.List(m, "Value")
		if len(vals) == 0 {
			return nil, errInvalidValue("The filter '%s' has no values", name)
		}
		out = append(out, filter{name: name, values: vals})
	}
	return out, nil
}

// matches applies EC2's rule: every filter must match (AND), a filter
// matches when any of its values matches any of the resource's values for
// that name (OR). Values may use * and ? wildcards.
func matches(filters []filter, tags map[string]string, field func(name string) []string) bool {
	for _, f := range filters {
		var have []string
		switch {
		case strings.HasPrefix(f.name, "tag:"):
			if v, ok := tags[strings.TrimPrefix(f.name, "tag:")]; ok {
				have = []string{v}
			}
		case f.name == "tag-key":
			for k := range tags {
				have = append(have, k)
			}
		case f.name == "tag-value":
			for _, v := range tags {
				have = append(have, v)
			}
		default:
			have = field(f.name)
		}
		if !anyMatch(f.values, have) {
			return false
		}
	}
	return true
}

func anyMatch(patterns, values []string) bool {
	for _, p := range patterns {
		for _, v := range values {
			if wildcard(p, v) {
				return true
			}
		}
	}
	return false
}

// wildcard matches EC2 filter patterns: * any run, ? one character, \
// escapes the next character.
func wildcard(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if wildcard(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			p, s = p[1:], s[1:]
		default:
			c := p[0]
			if c == '\\' && len(p) > 1 {
				p = p[1:]
				c = p[0]
			}
			if s == "" || s[0] != c {
				return false
			}
			p, s = p[1:], s[1:]
		}
	}
	return s == ""
}

// page is EC2's pagination: with MaxResults (minimum minMax, capped at
// capMax) at most that many items and a NextToken when more remain.
// MaxResults cannot be combined with an explicit id list (idParam).
type pager struct {
	minMax, capMax int
	idParam        string // e.g. "VolumeId": the list parameter it excludes
}

func (p pager) apply(form url.Values, ids []string, n int, seqAt func(i int) int64) (start, end int, next string, err error) {
	if err := p.check(form, ids); err != nil {
		return 0, 0, "", err
	}
	maxStr, token := form.Get("MaxResults"), form.Get("NextToken")
	limit := n
	if maxStr != "" {
		m, perr := strconv.Atoi(maxStr)
		if perr != nil || m < p.minMax {
			return 0, 0, "", errInvalidValue("Value ( %s ) for parameter maxResults is invalid. Expecting a value greater than %d.", maxStr, p.minMax-1)
		}
		limit = min(m, p.capMax)
	}
	if token != "" {
		after, ok := decodeToken(token)
		if !ok {
			return 0, 0, "", awsproto.BadRequest("InvalidPaginationToken", "Invalid pagination token %q", token)
		}
		start = sort.Search(n, func(i int) bool { return seqAt(i) > after })
	}
	end = min(n, start+limit)
	if end < n {
		next = encodeToken(seqAt(end - 1))
	}
	return start, end, next, nil
}

// check refuses MaxResults or NextToken together with an id list, before
// the ids are looked up (EC2 answers the combination error first).
func (p pager) check(form url.Values, ids []string) error {
	if len(ids) > 0 && (form.Get("MaxResults") != "" || form.Get("NextToken") != "") {
		return errCombination("The parameter %s cannot be used with the parameter maxResults", p.idParam)
	}
	return nil
}

func encodeToken(after int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("after:" + strconv.FormatInt(after, 10)))
}

func decodeToken(tok string) (int64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, false
	}
	rest, ok := strings.CutPrefix(string(b), "after:")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	return n, err == nil
}
