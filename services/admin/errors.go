package admin

import (
	"context"
	"errors"
	"log/slog"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tenant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcError is the one place that maps Herald's errors to gRPC status codes;
// grpc-gateway turns those into HTTP statuses (InvalidArgument 400,
// Unauthenticated 401, PermissionDenied 403, NotFound 404, AlreadyExists
// and Aborted 409, Unimplemented 501, Unavailable 503, Internal 500) with a
// JSON body {"code", "message", "details"}. A credential identity another
// record holds is AlreadyExists, a tenant still being deleted Aborted. Errors that already are a
// status of this package's making pass through; unexpected errors are
// logged and reported without detail.
func grpcError(log *slog.Logger, err error) error {
	var code codes.Code
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, tenant.ErrInvalidID), errors.Is(err, tenant.ErrInvalidPage),
		errors.Is(err, tenant.ErrInvalid), errors.Is(err, authz.ErrInvalidCapability):
		code = codes.InvalidArgument
	case errors.Is(err, tenant.ErrConflict), errors.Is(err, tenant.ErrDeleting):
		code = codes.Aborted
	case errors.Is(err, tenant.ErrAlreadyExists), errors.Is(err, tenant.ErrIdentityTaken):
		// ErrIdentityTaken names the identity, never who holds it.
		code = codes.AlreadyExists
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	default:
		// The etcd client reports an unreachable cluster as gRPC status
		// Unavailable; keep that retryable.
		if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
			log.Warn("admin API: tenant store unavailable", "err", err)
			return status.Error(codes.Unavailable, "tenant store unavailable")
		}
		log.Error("admin API: internal error", "err", err)
		return status.Error(codes.Internal, "internal error")
	}
	return status.Error(code, err.Error())
}

// invalid is an INVALID_ARGUMENT status for a request the API itself
// rejects.
func invalid(msg string) error { return status.Error(codes.InvalidArgument, msg) }
