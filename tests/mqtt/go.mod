module github.com/heraldmq/herald/tests/mqtt

go 1.26.8

require github.com/eclipse/paho.golang v0.23.0

require (
	github.com/eclipse/paho.mqtt.golang v1.5.1 // indirect
	github.com/gorilla/websocket v1.5.3 // indirect
	golang.org/x/net v0.44.0 // indirect
	golang.org/x/sync v0.17.0 // indirect
)
