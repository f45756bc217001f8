package store

import "github.com/redis/go-redis/v9"

// RedisConnection is how a command reaches Redis besides the addresses
// (whose default and help differ from one command to another): the key
// prefix, Sentinel, credentials and TLS. herald-edge, herald-session and
// herald-admin embed it, so that the three decode the same flags,
// environment variables and YAML keys into one struct and build their
// client in one place.
type RedisConnection struct {
	Prefix           string `name:"redis-prefix" default:"herald" env:"HERALD_REDIS_PREFIX" help:"Redis key prefix."`
	MasterName       string `name:"redis-master-name" env:"HERALD_REDIS_MASTER_NAME" placeholder:"NAME" help:"Sentinel master name: --redis-addrs are then Sentinels and the client follows failovers."`
	Username         string `name:"redis-username" env:"HERALD_REDIS_USERNAME" placeholder:"USER" help:"Redis ACL user name."`
	Password         string `name:"redis-password" env:"HERALD_REDIS_PASSWORD" placeholder:"PASSWORD" help:"Redis password (prefer the environment variable to the flag)."`
	SentinelUsername string `name:"redis-sentinel-username" env:"HERALD_REDIS_SENTINEL_USERNAME" placeholder:"USER" help:"ACL user name for the Sentinels of --redis-master-name."`
	SentinelPassword string `name:"redis-sentinel-password" env:"HERALD_REDIS_SENTINEL_PASSWORD" placeholder:"PASSWORD" help:"Password of the Sentinels of --redis-master-name (prefer the environment variable to the flag)."`
	TLS              bool   `name:"redis-tls" env:"HERALD_REDIS_TLS" help:"Connect to Redis over TLS, verified against the system CAs (extended by SSL_CERT_FILE, SSL_CERT_DIR)."`
}

// Client returns a client of the Redis at addrs (one address: standalone;
// several: Redis Cluster; with MasterName: Sentinels).
func (c RedisConnection) Client(addrs []string) redis.UniversalClient {
	return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, MasterName: c.MasterName,
		Username: c.Username, Password: c.Password, TLSConfig: RedisTLSConfig(c.TLS),
		SentinelUsername: c.SentinelUsername, SentinelPassword: c.SentinelPassword})
}

// Store returns the Redis store over rdb with the connection's key prefix.
func (c RedisConnection) Store(rdb redis.UniversalClient) *Redis {
	return NewRedis(rdb, RedisConfig{KeyPrefix: c.Prefix})
}
