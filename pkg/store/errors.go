package store

import "errors"

// Sentinel errors; implementations wrap them with %w.
var (
	// ErrBadTenant is returned for an empty tenant id, one containing '{' or
	// '}', or a message whose Tenant is not the tenant being applied.
	ErrBadTenant = errors.New("store: invalid tenant")
	// ErrNoEpoch is returned by Apply without an epoch.
	ErrNoEpoch = errors.New("store: missing epoch")
	// ErrOutOfOrder is returned by Apply for a batch whose sequences are not
	// strictly ascending, or contain a zero sequence.
	ErrOutOfOrder = errors.New("store: batch not in ascending sequence order")
	// ErrBadLimits is returned for negative replay limits.
	ErrBadLimits = errors.New("store: negative replay limit")
	// ErrBadFilter is returned by Retained for an invalid topic filter.
	ErrBadFilter = errors.New("store: invalid topic filter")
	// ErrCorrupt is returned when a stored record cannot be decoded.
	ErrCorrupt = errors.New("store: corrupt record")
)
