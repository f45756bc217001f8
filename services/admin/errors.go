package admin

import (
	"log/slog"

	"github.com/heraldmq/herald/pkg/fault"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcError maps Herald's errors to gRPC status codes through pkg/fault's
// table (the kind each sentinel declares); grpc-gateway turns those into
// HTTP statuses (InvalidArgument 400, Unauthenticated 401,
// PermissionDenied 403, NotFound 404, AlreadyExists and Aborted 409,
// Unimplemented 501, Unavailable 503, Internal 500) with a JSON body
// {"code", "message", "details"}. A credential identity another record
// holds is AlreadyExists, a tenant still being deleted Aborted. The etcd
// client's errors are classified here, at the admin API's boundary with
// it: an unreachable cluster (gRPC status Unavailable) stays retryable.
// Errors of no kind are logged and reported without detail.
func grpcError(log *slog.Logger, err error) error {
	k := fault.KindOf(err)
	switch k {
	case fault.Internal:
		if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
			log.Warn("admin API: tenant store unavailable", "err", err)
			return status.Error(codes.Unavailable, "tenant store unavailable")
		}
		log.Error("admin API: internal error", "err", err)
		return status.Error(codes.Internal, "internal error")
	case fault.Unavailable:
		log.Warn("admin API: unavailable", "err", err)
	}
	return status.Error(k.Codes().GRPC, err.Error())
}

// invalid is an INVALID_ARGUMENT status for a request the API itself
// rejects.
func invalid(msg string) error { return status.Error(codes.InvalidArgument, msg) }
