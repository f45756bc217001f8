package store

import (
	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/record"
)

// Sentinel errors; implementations wrap them with %w.
var (
	// ErrBadTenant is returned for an empty tenant id, one containing '{' or
	// '}', or a message whose Tenant is not the tenant being applied.
	ErrBadTenant = fault.New(fault.Invalid, "store: invalid tenant")
	// ErrNoEpoch is returned by Apply without an epoch.
	ErrNoEpoch = fault.New(fault.Invalid, "store: missing epoch")
	// ErrOutOfOrder is returned by Apply for a batch whose sequences are not
	// strictly ascending, or contain a zero sequence.
	ErrOutOfOrder = fault.New(fault.Invalid, "store: batch not in ascending sequence order")
	// ErrBadLimits is returned for negative limits.
	ErrBadLimits = fault.New(fault.Invalid, "store: negative limit")
	// ErrBadFilter is returned by Retained for an invalid topic filter.
	ErrBadFilter = fault.New(fault.InvalidFilter, "store: invalid topic filter")
	// ErrCorrupt is returned when a stored record cannot be decoded.
	ErrCorrupt = fault.New(fault.Internal, "store: corrupt record")
	// ErrFenced is returned by ApplyBatch when a writer with a newer fence
	// token (a newer owner of the tenant) has written: the caller lost its
	// ownership and must stop writing.
	ErrFenced = fault.New(fault.Conflict, "store: fenced by a newer owner")
	// ErrStateLost is returned by ApplyBatch when the store holds less than
	// the writer knows it applied (Batch.Expect): the store lost data (a
	// flush, a restart without persistence, a failover to a lagging replica)
	// and the tenant must be rebuilt from its stream. Nothing is written.
	ErrStateLost = fault.New(fault.Unavailable, "store: tenant state lost")
	// ErrNoSession is returned by LoadSession for an unknown session
	// (record.ErrNoSession).
	ErrNoSession = record.ErrNoSession
	// ErrConflict is returned by SaveSession and DeleteSession when the
	// stored session's revision is not the one the caller read: another
	// writer changed it in between (record.ErrConflict).
	ErrConflict = record.ErrConflict
	// ErrSessionLimit is returned by SaveSession creating a session beyond
	// the tenant's Limits.Sessions; nothing is written
	// (record.ErrSessionLimit).
	ErrSessionLimit = record.ErrSessionLimit
	// ErrBadSession is returned for a session without a client id, or with
	// an invalid subscription filter.
	ErrBadSession = fault.New(fault.Invalid, "store: invalid session")
	// ErrBadEdge is returned for an empty edge name, or one containing NUL.
	ErrBadEdge = fault.New(fault.Invalid, "store: invalid edge name")
)
