package telemetry

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// AdminHandler wraps the admin API's HTTP handler (gRPC and REST share its
// port) and records every request's latency (herald.admin.request.duration).
// A gRPC call is labelled by its method and gRPC status code; a REST call
// by its HTTP method (paths hold tenant ids, so they are not labels) and
// status class (2xx, 4xx, ...).
func AdminHandler(p Providers, next http.Handler) http.Handler {
	h, _ := p.meter().Float64Histogram(MetricAdminRequestDuration, metric.WithUnit("s"),
		metric.WithDescription("Admin API calls."), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		op, result := "REST "+r.Method, strconv.Itoa(sw.status/100)+"xx"
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			op, result = r.URL.Path, grpcCode(w.Header().Get("Grpc-Status"))
		}
		h.Record(r.Context(), time.Since(start).Seconds(), metric.WithAttributes(
			attribute.String(LabelOperation, op), attribute.String(LabelResult, result)))
	})
}

// grpcCodes are the names of the gRPC status codes, by number.
var grpcCodes = []string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
	"Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

func grpcCode(v string) string {
	if v == "" {
		return "OK"
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 && n < len(grpcCodes) {
		return grpcCodes[n]
	}
	return "Unknown"
}

// statusWriter remembers the status written; Flush and Unwrap keep
// streaming and http.ResponseController working through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
