// Package chart tests the Helm chart in charts/herald offline: every
// manifest it renders decodes strictly into the Kubernetes API types, Helm's
// linter passes without warnings, values.schema.json refuses bad values, the
// rendered pods keep Herald's operating contract (drain timing, probes,
// non-root) and pass only flags and environment variables that the service
// binaries really have.
//
// The Helm SDK and the Kubernetes API modules are heavy; they are required
// by this module alone, so the services never build against them.
package chart
