module github.com/heraldmq/herald/tests

go 1.26.8

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/net v0.61.0 // indirect
	golang.org/x/sync v0.17.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

require (
	github.com/coder/websocket v1.8.15
	github.com/eclipse/paho.golang v0.23.0
	github.com/eclipse/paho.mqtt.golang v1.5.1
	github.com/heraldmq/herald/pkg v0.0.0
	github.com/nats-io/nats.go v1.55.0
	gopkg.in/yaml.v3 v3.0.1
)

// Herald's modules are developed together; the workspace (go.work) and these
// replacements resolve them from the tree.
replace github.com/heraldmq/herald/pkg => ../pkg
