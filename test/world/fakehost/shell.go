package fakehost

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// shell is the fake instance's /bin/sh, for what SSM's aws:runShellScript
// runs from tether's documents, and nothing more:
//
//	set -eu                                  (options: ignored, -e is always on)
//	set -- WORD...                           (positional parameters)
//	if [ TEST ]; then COMMAND; fi            (TEST: -n W, -z W, W = W, W != W)
//	[exec] tether-agent WORD...              (also by absolute path)
//
// Words may be quoted ('…' literally, "…" with only $NAME and ${NAME}
// expanded, from the environment SSM gives the script) and "$@" expands to
// the positional parameters. An unset variable expands to "", or exits 2
// after `set -u`, as sh does. Any other expansion, glob, pipe, redirection
// or control flow exits 2 with the reason on stderr; any other program
// exits 127, as a shell would. A failing command ends the script.
type shell struct {
	run     func(args []string) int // tether-agent's argv after its name
	stderr  *bytes.Buffer
	params  []string
	env     map[string]string // the variables the script may expand
	nounset bool              // set -u
}

// word is one shell word; at marks the "$@" word.
type word struct {
	text string
	at   bool
}

var errUnsupported = errors.New("unsupported shell syntax")

// shellSyntaxError is what sh exits with on a syntax error.
const shellSyntaxError = 2

// shellKeywords are control flow the fake shell refuses rather than calls
// "command not found".
var shellKeywords = map[string]bool{
	"if": true, "then": true, "else": true, "elif": true, "fi": true, "for": true, "while": true,
	"until": true, "do": true, "done": true, "case": true, "esac": true, "select": true, "function": true,
}

func (sh *shell) script(script string) int {
	script = strings.ReplaceAll(script, "\\\n", "")
	for n, line := range strings.Split(script, "\n") {
		cmds, err := sh.lexLine(line)
		if err != nil {
			fmt.Fprintf(sh.stderr, "sh: line %d: %v\n", n+1, err)
			return shellSyntaxError
		}
		code, exit := sh.line(cmds, n+1)
		if code != 0 || exit {
			return code
		}
	}
	return 0
}

// line runs one line's commands; exit reports an exec.
func (sh *shell) line(cmds [][]word, n int) (code int, exit bool) {
	if len(cmds) > 0 && len(cmds[0]) > 0 && cmds[0][0].text == "if" && !cmds[0][0].at {
		return sh.ifThen(cmds, n)
	}
	for _, c := range cmds {
		if code, exit = sh.command(sh.expand(c), n); code != 0 || exit {
			return code, exit
		}
	}
	return 0, false
}

// ifThen runs `if [ TEST ]; then COMMAND; fi`.
func (sh *shell) ifThen(cmds [][]word, n int) (int, bool) {
	if len(cmds) != 3 || len(cmds[1]) < 2 || cmds[1][0].text != "then" || len(cmds[2]) != 1 || cmds[2][0].text != "fi" {
		fmt.Fprintf(sh.stderr, "sh: line %d: %v: only `if [ TEST ]; then COMMAND; fi`\n", n, errUnsupported)
		return shellSyntaxError, true
	}
	test := sh.expand(cmds[0][1:])
	if len(test) < 2 || test[0] != "[" || test[len(test)-1] != "]" {
		fmt.Fprintf(sh.stderr, "sh: line %d: %v: the condition must be [ … ]\n", n, errUnsupported)
		return shellSyntaxError, true
	}
	ok, err := evalTest(test[1 : len(test)-1])
	if err != nil {
		fmt.Fprintf(sh.stderr, "sh: line %d: [: %v\n", n, err)
		return shellSyntaxError, true
	}
	if !ok {
		return 0, false
	}
	return sh.command(sh.expand(cmds[1][1:]), n)
}

func evalTest(args []string) (bool, error) {
	switch {
	case len(args) == 2 && args[0] == "-n":
		return args[1] != "", nil
	case len(args) == 2 && args[0] == "-z":
		return args[1] == "", nil
	case len(args) == 3 && args[1] == "=":
		return args[0] == args[2], nil
	case len(args) == 3 && args[1] == "!=":
		return args[0] != args[2], nil
	}
	return false, fmt.Errorf("%w: test %q", errUnsupported, args)
}

func (sh *shell) expand(ws []word) []string {
	var out []string
	for _, w := range ws {
		if w.at {
			out = append(out, sh.params...)
		} else {
			out = append(out, w.text)
		}
	}
	return out
}

func (sh *shell) command(argv []string, n int) (int, bool) {
	if len(argv) == 0 {
		return 0, false
	}
	exec := argv[0] == "exec"
	if exec {
		argv = argv[1:]
		if len(argv) == 0 {
			return 0, true
		}
	}
	switch {
	case argv[0] == "set" && len(argv) > 1 && argv[1] == "--":
		sh.params = append([]string(nil), argv[2:]...)
		return 0, false
	case argv[0] == "set":
		for _, opt := range argv[1:] {
			if !strings.HasPrefix(opt, "-") && !strings.HasPrefix(opt, "+") && opt != "pipefail" {
				fmt.Fprintf(sh.stderr, "sh: line %d: set: %v: %q\n", n, errUnsupported, opt)
				return shellSyntaxError, true
			}
			if strings.Contains(opt, "u") {
				sh.nounset = strings.HasPrefix(opt, "-")
			}
		}
		return 0, false
	case shellKeywords[argv[0]]:
		fmt.Fprintf(sh.stderr, "sh: line %d: %v: %s\n", n, errUnsupported, argv[0])
		return shellSyntaxError, true
	case argv[0] == "true" || argv[0] == ":":
		return 0, exec
	case path.Base(argv[0]) == "tether-agent" && (argv[0] == "tether-agent" || path.IsAbs(argv[0])):
		return sh.run(argv[1:]), exec
	}
	fmt.Fprintf(sh.stderr, "sh: line %d: %s: command not found\n", n, argv[0])
	return 127, true
}

// lexLine splits a line into commands (separated by ';') of words.
func (sh *shell) lexLine(line string) ([][]word, error) {
	var cmds [][]word
	var cur []word
	var b strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			cur = append(cur, word{text: b.String()})
			b.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case c == ';':
			flush()
			cmds = append(cmds, cur)
			cur = nil
		case c == '#' && !inWord:
			i = len(line)
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated '")
			}
			b.WriteString(line[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			end := strings.IndexByte(line[i+1:], '"')
			if end < 0 {
				return nil, errors.New(`unterminated "`)
			}
			inner := line[i+1 : i+1+end]
			if inner == "$@" && !inWord && (i+end+2 >= len(line) || strings.IndexByte(" \t;", line[i+end+2]) >= 0) {
				cur = append(cur, word{at: true})
				i += end + 1
				continue
			}
			expanded, err := sh.expandVars(inner)
			if err != nil {
				return nil, err
			}
			b.WriteString(expanded)
			i += end + 1
			inWord = true
		case strings.IndexByte("$`\\|&<>(){}*?~", c) >= 0:
			return nil, fmt.Errorf("%w: %q", errUnsupported, c)
		default:
			b.WriteByte(c)
			inWord = true
		}
	}
	flush()
	if len(cur) > 0 || len(cmds) > 0 {
		cmds = append(cmds, cur)
	}
	return cmds, nil
}

// varName is a shell variable's name.
var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*`)

// expandVars expands $NAME and ${NAME} in the text of a double-quoted word
// from the script's environment; any other expansion or escape is refused.
func (sh *shell) expandVars(inner string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		if c == '`' || c == '\\' {
			return "", fmt.Errorf("%w: expansion or escape in %q", errUnsupported, inner)
		}
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		rest, braced := inner[i+1:], false
		if strings.HasPrefix(rest, "{") {
			rest, braced = rest[1:], true
		}
		name := varName.FindString(rest)
		if name == "" || (braced && !strings.HasPrefix(rest[len(name):], "}")) {
			return "", fmt.Errorf("%w: expansion in %q", errUnsupported, inner)
		}
		v, ok := sh.env[name]
		if !ok && sh.nounset {
			return "", fmt.Errorf("%s: parameter not set", name)
		}
		b.WriteString(v)
		i += len(name)
		if braced {
			i += 2
		}
	}
	return b.String(), nil
}
