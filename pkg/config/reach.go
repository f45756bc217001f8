package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
)

// Unreachable lists what a command's configuration cannot set from all
// three of its sources: each flag of node (a command of a parser, the
// parser's Model.Node for its root) without an environment
// variable ("--flag: no environment variable"), and each settable field of
// the configuration structs under root (the command's cli struct) that no
// flag sets ("Type.Field: no flag"), fields tagged kong:"-" excepted. A
// flag's name is its YAML key, so a flag reaches the file too. Every
// setting of a Herald command is a flag, an environment variable and a
// YAML key at once: the commands' tests call it and expect nothing.
func Unreachable(node *kong.Node, root any) []string {
	var out []string
	set := map[string]bool{}
	for _, group := range node.AllFlags(true) {
		for _, f := range group {
			if f.Name == "help" || f.Name == "config" || f.Name == "version" {
				continue
			}
			set[f.Name] = true
			if len(f.Envs) == 0 {
				out = append(out, fmt.Sprintf("--%s: no environment variable", f.Name))
			}
		}
	}
	walk(reflect.TypeOf(root), "", func(flag, field string) {
		if !set[flag] {
			out = append(out, fmt.Sprintf("%s: no flag (--%s)", field, flag))
		}
	})
	slices.Sort(out)
	return out
}

// walk calls fn with the flag name and the field's name of every leaf field
// of the struct type t kong would see, prefix applied.
func walk(t reflect.Type, prefix string, fn func(flag, field string)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	for i := range t.NumField() {
		ft := t.Field(i)
		tag := ft.Tag
		if tag.Get("kong") == "-" || !ft.IsExported() || ft.Type == reflect.TypeOf(kong.ConfigFlag("")) || ft.Type == reflect.TypeOf(kong.VersionFlag(false)) {
			continue
		}
		if _, embed := tag.Lookup("embed"); embed || ft.Anonymous {
			walk(ft.Type, prefix+tag.Get("prefix"), fn)
			continue
		}
		if _, cmd := tag.Lookup("cmd"); cmd {
			continue
		}
		name := tag.Get("name")
		if name == "" {
			name = kebab(ft.Name)
		}
		fn(prefix+name, t.Name()+"."+ft.Name)
	}
}

// kebab is kong's default flag name of a field.
func kebab(s string) string {
	var b strings.Builder
	runes := []rune(s)
	for i, r := range runes {
		upper := r >= 'A' && r <= 'Z'
		if upper && i > 0 && (runes[i-1] >= 'a' && runes[i-1] <= 'z' ||
			(i+1 < len(runes) && runes[i+1] >= 'a' && runes[i+1] <= 'z' && runes[i-1] >= 'A' && runes[i-1] <= 'Z')) {
			b.WriteByte('-')
		}
		if upper {
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
