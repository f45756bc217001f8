module github.com/heraldmq/herald/services/session

go 1.26.8

require (
	github.com/alecthomas/kong v1.17.0
	github.com/nats-io/nats.go v1.55.0
	github.com/redis/go-redis/v9 v9.23.0
)
