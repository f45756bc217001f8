module github.com/heraldmq/herald/tests/tenancy

go 1.26.8

require (
	github.com/coder/websocket v1.8.15
	github.com/eclipse/paho.golang v0.23.0
)
