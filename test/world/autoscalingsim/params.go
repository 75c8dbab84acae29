package autoscalingsim

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

// Reading awsQuery parameters with the constraints of botocore's model
// (autoscaling-2011-01-01): lists are Name.member.N, structures Name.Field.

func param(form url.Values, name string) (string, bool) {
	v, ok := form[name]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// member is the camel-case member name AWS's messages use.
func member(name string) string { return strings.ToLower(name[:1]) + name[1:] }

// checkLen applies a string shape's min and max length.
func checkLen(name, v string, lo, hi int) error {
	if len(v) < lo {
		return errValidation("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must have length greater than or equal to %d", v, member(name), lo)
	}
	if len(v) > hi {
		return errValidation("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must have length less than or equal to %d", v, member(name), hi)
	}
	return nil
}

// requiredString reads a required string with its length bounds.
func requiredString(form url.Values, name string, lo, hi int) (string, error) {
	v, ok := param(form, name)
	if !ok {
		return "", errNull(name)
	}
	return v, checkLen(name, v, lo, hi)
}

// optString reads an optional string with its length bounds.
func optString(form url.Values, name string, lo, hi int) (string, bool, error) {
	v, ok := param(form, name)
	if !ok {
		return "", false, nil
	}
	return v, true, checkLen(name, v, lo, hi)
}

func optInt(form url.Values, name string) (int, bool, error) {
	v, ok := param(form, name)
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, true, errValidation("Invalid value for %s: %q is not an integer.", name, v)
	}
	return n, true, nil
}

func optBool(form url.Values, name string) (bool, bool, error) {
	v, ok := param(form, name)
	if !ok {
		return false, false, nil
	}
	switch v {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, true, errValidation("Invalid value for %s: %q is not a boolean.", name, v)
}

func list(form url.Values, name string) []string { return awsproto.List(form, name+".member") }

// hookNamePattern is AsciiStringMaxLen255's pattern (lifecycle hook names).
var hookNamePattern = regexp.MustCompile(`^[A-Za-z0-9\-_/]+$`)

func checkHookName(v string) error {
	if err := checkLen("LifecycleHookName", v, 1, 255); err != nil {
		return err
	}
	if !hookNamePattern.MatchString(v) {
		return errValidation("1 validation error detected: Value '%s' at 'lifecycleHookName' failed to satisfy constraint: Member must satisfy regular expression pattern: [A-Za-z0-9\\-_\\/]+", v)
	}
	return nil
}
