package javaregex

import (
	"regexp"
	"strings"
	"testing"
)

func TestTranslateKeepsJavaMeaning(t *testing.T) {
	cases := []struct {
		java     string
		match    []string
		noMatch  []string
		whyNoRE2 string // non-empty: Translate must refuse, naming this
	}{
		// Whole-value match, as CloudFormation applies its stack-name pattern.
		{java: `[a-zA-Z][-a-zA-Z0-9]*|arn:[-a-zA-Z0-9:/._+]*`, match: []string{"stack-1", "arn:aws:x"}, noMatch: []string{"*@da591fa3_$", ""}},
		// SSM's comment pattern: '.' stops at every Java line terminator.
		{java: `^.{0,3}$`, match: []string{"", "abc", "a\tb"}, noMatch: []string{"abcd", "a\nb", "a\rb", "a\u0085", "a\u2028", "\u2029"}},
		// \s includes the vertical tab in Java.
		{java: `\s+`, match: []string{" \t\x0B\f\r\n"}, noMatch: []string{"a"}},
		{java: `\S+`, match: []string{"ab"}, noMatch: []string{"a\x0Bb"}},
		{java: `[\s\S]+`, match: []string{"any\x0Bthing\n"}},
		{java: `[^\s]+`, match: []string{"ab"}, noMatch: []string{"a\x0B"}},
		// \u escapes, a surrogate pair joined into one code point.
		{java: `[\u0020-\u007e]+`, match: []string{"a b~"}, noMatch: []string{"\x7f"}},
		{java: `[\uD800\uDC00-\uDBFF\uDFFF]`, match: []string{"\U0001F600"}, noMatch: []string{"a"}},
		// Tag characters as ECS and SSM models write them.
		{java: `^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`, match: []string{"Name", "é 1_.:/=+-@"}, noMatch: []string{"a&b", "a,b"}},
		// A '.' inside a class is a literal dot.
		{java: `[.]`, match: []string{"."}, noMatch: []string{"a"}},
		{java: `\Qa.b\E`, match: []string{"a.b"}, noMatch: []string{"axb"}},
		{java: `[]a]+`, match: []string{"]a"}},

		{java: `^(?!\s*$).+`, whyNoRE2: `"(?!"`},
		{java: `(?i)all`, whyNoRE2: `"(?i"`},
		{java: `(a)\1`, whyNoRE2: `backreference`},
		{java: `^.{1,100000}$`, whyNoRE2: `invalid repeat count`},
		{java: `a*+`, whyNoRE2: `nested repetition`},
		{java: `[a-z[0-9]]`, whyNoRE2: `class union`},
		{java: `[a-z&&b]`, whyNoRE2: `intersection`},
		{java: `[\S]`, whyNoRE2: `\S inside a character class`},
		{java: `\h`, whyNoRE2: `\h`},
	}
	for _, c := range cases {
		got, err := Translate(c.java)
		if c.whyNoRE2 != "" {
			if err == nil || !strings.Contains(err.Error(), c.whyNoRE2) {
				t.Errorf("Translate(%q) = %q, %v; want an error naming %q", c.java, got, err, c.whyNoRE2)
			}
			continue
		}
		if err != nil {
			t.Errorf("Translate(%q): %v", c.java, err)
			continue
		}
		re := regexp.MustCompile(got)
		for _, s := range c.match {
			if !re.MatchString(s) {
				t.Errorf("%q (RE2 %s) does not match %q; Java's does", c.java, got, s)
			}
		}
		for _, s := range c.noMatch {
			if re.MatchString(s) {
				t.Errorf("%q (RE2 %s) matches %q; Java's does not", c.java, got, s)
			}
		}
	}
}
