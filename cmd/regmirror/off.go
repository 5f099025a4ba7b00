package main

import (
	"fmt"
	"reflect"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// The config file has one way to turn a setting off: `0` (`0s` for a
// duration). A key left out takes its default. Settings that can be off
// are pointers (nil: the default, 0: off), a Count, or listed in
// zeroIsDefault; `0` on any other number is refused rather than quietly
// read as the default (docs/configuration.md, "Defaults and off").

// Count is a number of requests, connections or retries whose zero value
// means the default. In the file `0` turns it off, which is stored as -1
// so that a key left out keeps its default. A negative number, the way
// these settings were turned off before, reads as `0` too.
type Count int

// countOff is how Count stores off.
const countOff Count = -1

// off reports whether the count says off.
func (n Count) off() bool { return n < 0 }

// UnmarshalYAML reads a number; 0 and negative numbers are off.
func (n *Count) UnmarshalYAML(node *yaml.Node) error {
	var v int
	if err := node.Decode(&v); err != nil {
		return err
	}
	*n = Count(v)
	if v <= 0 {
		*n = countOff
	}
	return nil
}

// MarshalYAML writes off as 0, the way the file says it.
func (n Count) MarshalYAML() (any, error) {
	if n.off() {
		return 0, nil
	}
	return int(n), nil
}

// zeroIsDefault are the numbers whose default is off already, so that
// `0` says the default and off at once.
var zeroIsDefault = []string{"cache.max_size"}

// zeroProblems reports the numbers the file sets to 0 that cannot be off,
// each at its line: t is the type of the setting at key, node the file's
// YAML for it.
func zeroProblems(t reflect.Type, node *yaml.Node, key string) []configProblem {
	for node != nil && node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	if node == nil {
		return nil
	}
	switch {
	case t.Kind() == reflect.Slice && node.Kind == yaml.SequenceNode:
		var problems []configProblem
		for i, item := range node.Content {
			problems = append(problems, zeroProblems(t.Elem(), item, fmt.Sprintf("%s[%d]", key, i))...)
		}
		return problems
	case t.Kind() == reflect.Struct && node.Kind == yaml.MappingNode && t != reflect.TypeFor[time.Time]():
		var problems []configProblem
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlKey(f)
			if !f.IsExported() || name == "-" {
				continue
			}
			if value, _ := child(node, name); value != nil {
				problems = append(problems, zeroProblems(f.Type, value, joinKey(key, name))...)
			}
		}
		return problems
	case node.Kind == yaml.ScalarNode && isPlainNumber(t) && !slices.Contains(zeroIsDefault, key):
		v := reflect.New(t)
		if node.Decode(v.Interface()) != nil || !v.Elem().IsZero() {
			return nil // not a number (decoding reports it), or not 0
		}
		return []configProblem{{line: node.Line, err: fmt.Errorf(
			"%s: %s would turn it off, which it cannot be: leave the key out for its default", key, node.Value)}}
	}
	return nil
}

// isPlainNumber reports a number whose zero value means its default: not
// a pointer, not a Count.
func isPlainNumber(t reflect.Type) bool {
	if t == reflect.TypeFor[Count]() {
		return false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

func joinKey(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}
