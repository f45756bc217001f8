package telemetry

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// RedisHook returns a go-redis hook recording every command's and
// pipeline's latency (herald.redis.command.duration) by command name and
// result. Command names are Redis's own, a bounded set.
func RedisHook(p Providers) redis.Hook {
	h := &redisHook{sets: map[[2]string][]metric.RecordOption{}}
	h.latency, _ = p.meter().Float64Histogram(MetricRedisCommandDuration, metric.WithUnit("s"),
		metric.WithDescription("Redis commands and pipelines."), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	return h
}

type redisHook struct {
	latency metric.Float64Histogram
	mu      sync.RWMutex
	sets    map[[2]string][]metric.RecordOption
}

func (h *redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		h.record(start, cmd.Name(), err)
		return err
	}
}

func (h *redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.record(start, "pipeline", err)
		return err
	}
}

func (h *redisHook) record(start time.Time, op string, err error) {
	result := ResultOK
	if err != nil && err != redis.Nil {
		result = ResultError
	}
	h.latency.Record(context.Background(), time.Since(start).Seconds(), h.set(strings.ToLower(op), result)...)
}

// maxRedisOps bounds the operation label: module commands or a client
// sending arbitrary names cannot grow the series without end.
const maxRedisOps = 200

func (h *redisHook) set(op, result string) []metric.RecordOption {
	k := [2]string{op, result}
	h.mu.RLock()
	s := h.sets[k]
	n := len(h.sets)
	h.mu.RUnlock()
	if s != nil {
		return s
	}
	if n >= maxRedisOps {
		k[0] = "other"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s = h.sets[k]; s == nil {
		s = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(
			attribute.String(LabelOperation, k[0]), attribute.String(LabelResult, k[1])))}
		h.sets[k] = s
	}
	return s
}

var _ redis.Hook = (*redisHook)(nil)
