package admin

import (
	"context"
	"errors"
	"log/slog"

	"github.com/heraldmq/herald/pkg/tenant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcError is the one place that maps Herald's errors to gRPC status codes;
// grpc-gateway turns those into HTTP statuses (NotFound 404,
// InvalidArgument 400, Aborted 409, Unavailable 503, Internal 500) with a
// JSON body {"code", "message", "details"}. Unexpected errors are logged
// and reported without detail.
func grpcError(log *slog.Logger, err error) error {
	var code codes.Code
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, tenant.ErrInvalidID), errors.Is(err, tenant.ErrInvalidPage):
		code = codes.InvalidArgument
	case errors.Is(err, tenant.ErrConflict):
		code = codes.Aborted
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
