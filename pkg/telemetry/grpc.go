package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// EtcdDialOptions returns gRPC dial options for an etcd client
// (clientv3.Config.DialOptions) that record every unary call's latency
// (herald.etcd.request.duration) by method and status code. Watches are
// streams and are not timed.
func EtcdDialOptions(p Providers) []grpc.DialOption {
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(EtcdInterceptor(p))}
}

// EtcdInterceptor is the client interceptor of EtcdDialOptions.
func EtcdInterceptor(p Providers) grpc.UnaryClientInterceptor {
	h, _ := p.meter().Float64Histogram(MetricEtcdRequestDuration, metric.WithUnit("s"),
		metric.WithDescription("etcd client calls."), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		recordCall(h, start, method, err)
		return err
	}
}

// recordCall records one call; the method names are the services' own, a
// bounded set, and the result is the gRPC status code name.
func recordCall(h metric.Float64Histogram, start time.Time, method string, err error) {
	h.Record(context.Background(), time.Since(start).Seconds(), metric.WithAttributes(
		attribute.String(LabelOperation, method), attribute.String(LabelResult, status.Code(err).String())))
}
