package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Session replays the seed's shell snippets as a person would type them
// into one terminal: each runs in bash in the session's directory after the
// shell variables the earlier snippets set, exported ones exported and the
// others not (so drain-instance.sh, a child process, sees the exported stack
// outputs and not TaskDefinitionArn, exactly as in the walkthrough).
type Session struct {
	dir  string
	env  []string
	out  io.Writer
	vars map[string]string
}

// ErrSnippet is wrapped by Run when a snippet exits non-zero.
var ErrSnippet = errors.New("seed snippet failed")

// wrapper runs one snippet with bash's errexit and pipefail: the first
// failing command (or pipeline) ends it non-zero, as a person would notice.
// Variables new to the shell after the snippet are saved with declare -p
// (which keeps their export flag) for the next snippet, and as NUL-separated
// name/value pairs for Go.
const wrapper = `__tether_state=$1 __tether_values=$2 __tether_snippet=$3
declare -A __tether_seen
for __tether_n in $(compgen -v); do __tether_seen[$__tether_n]=1; done
if [ -s "$__tether_state" ]; then source "$__tether_state"; fi
set -eo pipefail
source "$__tether_snippet"
set +e
__tether_names=()
for __tether_n in $(compgen -v); do
	[[ -z ${__tether_seen[$__tether_n]-} && $__tether_n =~ ^[A-Za-z][A-Za-z0-9_]*$ ]] || continue
	[[ $__tether_n =~ ^(BASH.*|PIPESTATUS|FUNCNAME|GROUPS|COMP.*|OLDPWD|PWD|LINENO|SECONDS|RANDOM|SRANDOM|EPOCH.*)$ ]] && continue
	__tether_names+=("$__tether_n")
done
: > "$__tether_state"; : > "$__tether_values"
if [ ${#__tether_names[@]} -gt 0 ]; then
	declare -p "${__tether_names[@]}" > "$__tether_state" || exit 1
	for __tether_n in "${__tether_names[@]}"; do printf '%s\0%s\0' "$__tether_n" "${!__tether_n}"; done > "$__tether_values"
fi
`

// NewSession makes a session in dir (created if missing) with env as the
// shell's whole environment. The seed's files get-outputs.sh and
// drain-instance.sh are written there as the walkthrough's heredocs write
// them (not yet executable: the walkthrough's chmod +x does that).
// Snippets' commands and output go to out.
func NewSession(dir string, env []string, out io.Writer) (*Session, error) {
	if err := os.MkdirAll(filepath.Join(dir, ".tether"), 0o755); err != nil {
		return nil, fmt.Errorf("demo session: %w", err)
	}
	for _, name := range []string{"get-outputs.sh", "drain-instance.sh"} {
		if err := os.WriteFile(filepath.Join(dir, name), Seed(name), 0o644); err != nil {
			return nil, fmt.Errorf("demo session: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".tether", "wrapper.sh"), []byte(wrapper), 0o644); err != nil {
		return nil, fmt.Errorf("demo session: %w", err)
	}
	return &Session{dir: dir, env: env, out: out, vars: map[string]string{}}, nil
}

// Dir is the session's working directory (the JSON files the walkthrough
// writes are there).
func (s *Session) Dir() string { return s.dir }

// Var is a shell variable the snippets set so far ("" if unset).
func (s *Session) Var(name string) string { return s.vars[name] }

// Vars are the shell variables the snippets set so far.
func (s *Session) Vars() map[string]string {
	out := make(map[string]string, len(s.vars))
	for k, v := range s.vars {
		out[k] = v
	}
	return out
}

// Run runs the seed snippet name (a file under seed/), showing its text
// (heredoc bodies folded) and its output. The error wraps ErrSnippet when
// it exits non-zero.
func (s *Session) Run(ctx context.Context, name string) error {
	text := Seed(name)
	if text == nil {
		return fmt.Errorf("demo: no seed snippet %q", name)
	}
	return s.run(ctx, name, text)
}

// RunText runs a snippet given as text, shown like a seed snippet.
func (s *Session) RunText(ctx context.Context, label, text string) error {
	return s.run(ctx, label, []byte(text))
}

func (s *Session) run(ctx context.Context, label string, text []byte) error {
	meta := filepath.Join(s.dir, ".tether")
	snippet := filepath.Join(meta, "snippet.sh")
	if err := os.WriteFile(snippet, text, 0o644); err != nil {
		return err
	}
	fmt.Fprint(s.out, showSnippet(string(text)))
	state, values := filepath.Join(meta, "state"), filepath.Join(meta, "values")
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(meta, "wrapper.sh"), state, values, snippet)
	cmd.Dir = s.dir
	cmd.Env = s.env
	pw := &prefixWriter{w: s.out, prefix: "    │ ", head: foldHead, tail: foldTail}
	full, ferr := os.OpenFile(filepath.Join(s.dir, SessionLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if ferr != nil {
		return ferr
	}
	defer full.Close()
	fmt.Fprintf(full, "%s", strings.ReplaceAll(showSnippet(string(text)), "    $ ", "$ "))
	cmd.Stdout, cmd.Stderr = io.MultiWriter(pw, full), io.MultiWriter(pw, full)
	err := cmd.Run()
	pw.Flush()
	if err != nil {
		return fmt.Errorf("%s: %w: %w", label, ErrSnippet, err)
	}
	raw, err := os.ReadFile(values)
	if err != nil {
		return fmt.Errorf("%s: variables: %w", label, err)
	}
	s.vars = parseValues(raw)
	return nil
}

// parseValues reads NUL-separated name, value pairs.
func parseValues(raw []byte) map[string]string {
	vars := map[string]string{}
	parts := bytes.Split(raw, []byte{0})
	for i := 0; i+1 < len(parts); i += 2 {
		vars[string(parts[i])] = string(parts[i+1])
	}
	return vars
}

// showSnippet renders a snippet as typed at a prompt, each line prefixed
// with "$ " or "> ", a heredoc's body folded to a line count.
func showSnippet(text string) string {
	var b strings.Builder
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	cont := false
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if cont {
			b.WriteString("    > " + line + "\n")
		} else {
			b.WriteString("    $ " + line + "\n")
		}
		cont = strings.HasSuffix(line, "\\") || strings.HasSuffix(line, "(")
		if end, ok := heredocEnd(line); ok {
			j := i + 1
			for j < len(lines) && lines[j] != end {
				j++
			}
			fmt.Fprintf(&b, "    > … %d lines …\n", j-i-1)
			if j < len(lines) {
				b.WriteString("    > " + end + "\n")
			}
			i, cont = j, false
		}
	}
	return b.String()
}

// heredocEnd finds the delimiter of a `<< EOF` or `<< 'EOF'` on line.
func heredocEnd(line string) (string, bool) {
	_, after, ok := strings.Cut(line, "<<")
	if !ok {
		return "", false
	}
	word := strings.Trim(strings.TrimSpace(after), `'"`)
	if word == "" || strings.ContainsAny(word, " <>|;&") {
		return "", false
	}
	return word, true
}

// SessionLog is the file in the session's directory that keeps every
// snippet and its whole output (the terminal shows long outputs folded).
const SessionLog = "session.log"

// A snippet's output longer than foldHead+foldTail lines is shown as its
// first foldHead and last foldTail lines: the CLI's JSON answers run to
// hundreds of lines.
const (
	foldHead = 12
	foldTail = 3
)

// prefixWriter prefixes every line it passes on and folds long outputs:
// after head lines it holds lines back, and Flush shows the last tail of
// them with the count of those left out.
type prefixWriter struct {
	w          io.Writer
	prefix     string
	head, tail int
	partial    []byte
	lines      int
	held       []string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		p.line(string(p.partial[:i]))
		p.partial = p.partial[i+1:]
	}
}

func (p *prefixWriter) line(l string) {
	p.lines++
	if p.head > 0 && p.lines > p.head {
		p.held = append(p.held, l)
		return
	}
	fmt.Fprintf(p.w, "%s%s\n", p.prefix, l)
}

// Flush writes a last unterminated line and the held-back tail.
func (p *prefixWriter) Flush() {
	if len(p.partial) > 0 {
		p.line(string(p.partial))
		p.partial = nil
	}
	if len(p.held) > p.tail {
		fmt.Fprintf(p.w, "%s… %d more lines (all of it in %s) …\n", p.prefix, len(p.held)-p.tail, SessionLog)
		p.held = p.held[len(p.held)-p.tail:]
	}
	for _, l := range p.held {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, l)
	}
	p.held, p.lines = nil, 0
}
