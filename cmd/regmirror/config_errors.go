package main

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// keyError is a problem with the setting at one key of the config file.
// Validation returns it so that the problem can be shown at its line.
type keyError struct {
	// key is the setting's path in the file: "listen", "cache.max_size",
	// "upstreams[1].url", "hosted.permissions[0].groups[2]".
	key string
	err error
}

func (e *keyError) Error() string { return e.err.Error() }
func (e *keyError) Unwrap() error { return e.err }

// keyErrorf is fmt.Errorf placed at key of the config file.
func keyErrorf(key, format string, args ...any) error {
	return &keyError{key: key, err: fmt.Errorf(format, args...)}
}

// configErrors lists every problem of a configuration, each at its line
// of the config file where it has one. Every error that the configuration
// causes is one, so that the command line can tell them apart.
type configErrors struct {
	path     string
	problems []configProblem
}

// configProblem is one problem; line is 0 where the file has no line for
// it (a flag or environment variable, a problem of the file as a whole).
type configProblem struct {
	line int
	err  error
}

// Error writes one problem a line, as compilers do: "config.yaml:7: ...".
func (e *configErrors) Error() string {
	var b strings.Builder
	for i, p := range e.problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if p.line > 0 {
			fmt.Fprintf(&b, "%s:%d: ", e.path, p.line)
		}
		b.WriteString(p.err.Error())
	}
	return b.String()
}

// Unwrap gives errors.Is and errors.As every problem.
func (e *configErrors) Unwrap() []error {
	errs := make([]error, len(e.problems))
	for i, p := range e.problems {
		errs[i] = p.err
	}
	return errs
}

// configFile is a config file as read: its path, its YAML tree to find
// the line of a key, and the problems found so far.
type configFile struct {
	path     string
	root     *yaml.Node // nil without a file, or for an empty one
	problems []configProblem
}

// add records every problem err joins (errors.Join), each at the line of
// its key when it is (or wraps) a *keyError.
func (f *configFile) add(err error) {
	if err == nil {
		return
	}
	if listed, ok := err.(*configErrors); ok {
		f.problems = append(f.problems, listed.problems...)
		return
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			f.add(e)
		}
		return
	}
	p := configProblem{err: err}
	var ke *keyError
	if errors.As(err, &ke) {
		p.line = f.line(ke.key)
	}
	f.problems = append(f.problems, p)
}

// err is every problem recorded, or nil.
func (f *configFile) err() error {
	if len(f.problems) == 0 {
		return nil
	}
	// In the order of the file, those without a line last.
	slices.SortStableFunc(f.problems, func(a, b configProblem) int {
		return cmp.Or(cmp.Compare(lineOrLast(a.line), lineOrLast(b.line)), strings.Compare(a.err.Error(), b.err.Error()))
	})
	return &configErrors{path: f.path, problems: f.problems}
}

func lineOrLast(line int) int {
	if line == 0 {
		return math.MaxInt
	}
	return line
}

// line is the line of key in the file or, when the file does not set it,
// of the deepest part of it that it has (the entry upstreams[1] when its
// url is unset); 0 when the file has none of it.
func (f *configFile) line(key string) int {
	if f.root == nil {
		return 0
	}
	n, line := f.root, 0
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, part := range strings.Split(strings.ReplaceAll(key, "[", ".["), ".") {
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		next, at := child(n, part)
		if next == nil {
			break
		}
		n, line = next, at
	}
	return line
}

// child is the value at part ("url" or "[1]") of a mapping or sequence
// node, and the line where it is named.
func child(n *yaml.Node, part string) (*yaml.Node, int) {
	if index, ok := strings.CutPrefix(part, "["); ok {
		i, err := strconv.Atoi(strings.TrimSuffix(index, "]"))
		if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
			return nil, 0
		}
		return n.Content[i], n.Content[i].Line
	}
	if n.Kind != yaml.MappingNode {
		return nil, 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == part {
			return n.Content[i+1], n.Content[i].Line
		}
	}
	return nil, 0
}

// yamlLine matches the line the yaml package puts in its messages: "line 3: ...",
// "yaml: line 3: ...".
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// decodeProblems turns a yaml error into problems at their lines. A
// *yaml.TypeError lists every key that did not decode; a syntax error
// stops the parser at its first.
func decodeProblems(err error) []configProblem {
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	problems := make([]configProblem, 0, len(msgs))
	for _, msg := range msgs {
		p := configProblem{err: errors.New(msg)}
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			p.line, _ = strconv.Atoi(m[1])
			p.err = errors.New(unknownField.ReplaceAllString(m[2], "$1"))
		}
		problems = append(problems, p)
	}
	return problems
}

// unknownField trims the Go type from the yaml package's unknown-key message: the
// operator wrote a YAML key, not a Go type.
var unknownField = regexp.MustCompile(`(field \S+ not found) in type \S+`)

// typeError reports a value that does not decode without stopping the
// decoder, which goes on to find the other problems of the file (any
// other error from an UnmarshalYAML stops it).
func typeError(node *yaml.Node, err error) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", node.Line, err)}}
}
