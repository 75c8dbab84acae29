// Package javaregex translates the Java regular expressions of AWS service
// models (botocore's "pattern") into RE2, the syntax of Go's regexp, keeping
// their meaning, or says why it cannot.
//
// AWS checks a pattern against the whole value, as Java's String.matches
// does: CloudFormation refuses the stack name '*@da591fa3_$' for the pattern
// [a-zA-Z][-a-zA-Z0-9]*|arn:[-a-zA-Z0-9:/._+]* although a substring matches
// (localstack's test_stacks snapshot, recorded against AWS). So a translation
// is anchored at both ends.
//
// Where the two dialects read the same text differently, the translation
// spells out Java's meaning:
//   - Java's '.' excludes every line terminator (\n \r \u0085 \u2028
//     \u2029); RE2's excludes only \n.
//   - Java's \s includes the vertical tab \x0B; RE2's does not.
//   - Java writes code points as \uXXXX, astral ones as surrogate pairs;
//     RE2 writes \x{XXXXX}.
//
// Java constructs RE2 cannot express are refused with the reason:
// lookaround, backreferences, possessive and atomic groups, counted
// repetition over 1000, inline flags ((?i) folds ASCII only in Java, all of
// Unicode in RE2), and two that RE2 would silently read as something else:
// character class union ([a-z[0-9]]) and intersection (&&), and \S inside a
// character class that does not also hold \s.
package javaregex

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Translate returns an RE2 expression that matches exactly the strings the
// Java pattern matches as a whole (String.matches).
func Translate(java string) (string, error) {
	src, err := rewrite(java)
	if err != nil {
		return "", err
	}
	out := `\A(?:` + src + `)\z`
	if _, err := regexp.Compile(out); err != nil {
		return "", fmt.Errorf("RE2 cannot express it: %w", err)
	}
	return out, nil
}

const (
	javaSpace    = `\t\n\x0B\f\r `
	javaNotSpace = `[^\t\n\x0B\f\r ]`
	// javaDot is Java's '.': anything but a line terminator.
	javaDot = `[^\n\r\x{85}\x{2028}\x{2029}]`
)

// rewrite turns Java escapes into RE2 ones and refuses the constructs RE2
// would misread.
func rewrite(java string) (string, error) {
	var b strings.Builder
	inClass := false
	classStart := 0 // offset in b of the current class's '['
	classHasSpace, classHasNotSpace, classNegated := false, false, false
	for i := 0; i < len(java); {
		c := java[i]
		switch {
		case c == '\\':
			if i+1 >= len(java) {
				return "", fmt.Errorf("trailing backslash")
			}
			e := java[i+1]
			switch e {
			case 'u':
				r, n, err := codePoint(java[i:])
				if err != nil {
					return "", err
				}
				fmt.Fprintf(&b, `\x{%X}`, r)
				i += n
				continue
			case 's':
				if inClass {
					b.WriteString(javaSpace)
					classHasSpace = true
				} else {
					b.WriteString("[" + javaSpace + "]")
				}
			case 'S':
				if inClass {
					b.WriteString(`\S`)
					classHasNotSpace = true
				} else {
					b.WriteString(javaNotSpace)
				}
			case 'v', 'h', 'V', 'H', 'R', 'X', 'G', 'Z':
				return "", fmt.Errorf(`Java escape \%c has no RE2 equivalent`, e)
			case 'Q':
				end := strings.Index(java[i+2:], `\E`)
				lit := java[i+2:]
				if end >= 0 {
					lit = java[i+2 : i+2+end]
				}
				b.WriteString(regexp.QuoteMeta(lit))
				if end < 0 {
					i = len(java)
				} else {
					i += 2 + end + 2
				}
				continue
			default:
				if e >= '1' && e <= '9' {
					return "", fmt.Errorf(`backreference \%c`, e)
				}
				b.WriteByte('\\')
				b.WriteByte(e)
			}
			i += 2
		case inClass && c == '[':
			return "", fmt.Errorf("character class union (a class inside a class)")
		case inClass && c == '&' && i+1 < len(java) && java[i+1] == '&':
			return "", fmt.Errorf("character class intersection (&&)")
		case inClass && c == ']' && b.Len() > classStart+1 && !(classNegated && b.Len() == classStart+2):
			// The class ends (a ']' right after '[' or '[^' is a literal in
			// both dialects).
			if classHasNotSpace && (!classHasSpace || classNegated) {
				return "", fmt.Errorf(`\S inside a character class (RE2's \S also matches \x0B, Java's does not)`)
			}
			inClass = false
			b.WriteByte(c)
			i++
		case !inClass && c == '.':
			b.WriteString(javaDot)
			i++
		case !inClass && c == '(' && strings.HasPrefix(java[i:], "(?") && !strings.HasPrefix(java[i:], "(?:"):
			// Lookaround, atomic groups, named groups and inline flags. RE2
			// rejects most; (?i) it accepts but folds Unicode case where
			// Java folds ASCII only, and (?s) or (?m) would change what the
			// rewritten '.' and anchors mean.
			return "", fmt.Errorf("group construct %q", java[i:min(len(java), i+3)])
		case !inClass && c == '[':
			inClass = true
			classStart = b.Len()
			classHasSpace, classHasNotSpace = false, false
			classNegated = i+1 < len(java) && java[i+1] == '^'
			b.WriteByte(c)
			i++
			if classNegated {
				b.WriteByte('^')
				i++
			}
		default:
			b.WriteByte(c)
			i++
		}
	}
	if inClass {
		return "", fmt.Errorf("unterminated character class")
	}
	return b.String(), nil
}

// codePoint reads a Java \uXXXX escape at the start of s, joining a
// surrogate pair written as two escapes; n is the length read.
func codePoint(s string) (r rune, n int, err error) {
	hex4 := func(s string) (rune, bool) {
		if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(s[2:6], 16, 32)
		return rune(v), err == nil
	}
	hi, ok := hex4(s)
	if !ok {
		return 0, 0, fmt.Errorf(`malformed \u escape`)
	}
	if hi >= 0xD800 && hi <= 0xDBFF {
		if lo, ok := hex4(s[6:]); ok && lo >= 0xDC00 && lo <= 0xDFFF {
			return 0x10000 + (hi-0xD800)<<10 + (lo - 0xDC00), 12, nil
		}
	}
	return hi, 6, nil
}
