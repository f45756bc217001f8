// Package config lets every Herald command read one configuration from
// flags, environment variables and a YAML file, in that order of precedence,
// onto the same tagged struct (github.com/alecthomas/kong does the flags and
// environment; this package adds the YAML file).
//
// File keys are the flag names; nested maps join with "-" and "_" reads as
// "-" ("mqtt: {max_packet: 1}" is the flag --mqtt-max-packet), so the file
// mirrors the flags one to one.
package config

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"
)

// YAML is a kong.ConfigurationLoader for YAML files.
func YAML(r io.Reader) (kong.Resolver, error) {
	var tree map[string]any
	if err := yaml.NewDecoder(r).Decode(&tree); err != nil && err != io.EOF {
		return nil, fmt.Errorf("config: %w", err)
	}
	flat := map[string]any{}
	flatten("", tree, flat)
	return kong.ResolverFunc(func(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
		v, ok := flat[flag.Name]
		if !ok {
			return nil, nil
		}
		for _, env := range flag.Envs {
			if _, set := os.LookupEnv(env); set {
				// The environment outranks the file.
				return nil, nil
			}
		}
		if list, ok := v.([]any); ok {
			// kong parses a list flag from one comma-separated value.
			parts := make([]string, len(list))
			for i, e := range list {
				parts[i] = fmt.Sprint(e)
			}
			return strings.Join(parts, ","), nil
		}
		return v, nil
	}), nil
}

func flatten(prefix string, in map[string]any, out map[string]any) {
	for k, v := range in {
		key := strings.ReplaceAll(k, "_", "-")
		if prefix != "" {
			key = prefix + "-" + key
		}
		if m, ok := v.(map[string]any); ok {
			flatten(key, m, out)
			continue
		}
		out[key] = v
	}
}
