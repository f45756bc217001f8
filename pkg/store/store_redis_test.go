package store_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/store/storetest"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/redis/go-redis/v9"
)

var prefixes atomic.Int64

// openRedis returns a store over rdb with a key prefix no other test uses.
func openRedis(rdb redis.UniversalClient) func(t *testing.T) store.Store {
	return func(t *testing.T) store.Store {
		return store.NewRedis(rdb, store.RedisConfig{KeyPrefix: fmt.Sprintf("test%d", prefixes.Add(1))})
	}
}

// TestRedis ensures the Redis store meets the Store contract on a standalone server.
func TestRedis(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testserver.Redis(t)})
	t.Cleanup(func() { rdb.Close() })
	storetest.Run(t, openRedis(rdb))
}

// TestRedisCluster ensures the Redis store meets the Store contract on a
// Redis Cluster, which fails any script or transaction whose keys span slots.
func TestRedisCluster(t *testing.T) {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testserver.RedisCluster(t)})
	t.Cleanup(func() { rdb.Close() })
	storetest.Run(t, openRedis(rdb))
}
