package main

import (
	"context"
	"fmt"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// v3Client is an MQTT 3.1.1 client (Eclipse Paho), for brokers that speak
// nothing newer (nats-server's MQTT listener) and for like-for-like runs.
type v3Client struct {
	c     mqtt3.Client
	slots chan struct{} // bounds QoS 1 publishes awaiting PUBACK
}

func newV3Client(ctx context.Context, src *sources, addr, id string) (*v3Client, error) {
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(true).
		SetKeepAlive(60 * time.Second).SetAutoReconnect(false).SetConnectRetry(false).
		SetDialer(src.dialer()).SetOrderMatters(false).SetMessageChannelDepth(1 << 16)
	c := mqtt3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect %s: %v", addr, tok.Error())
	}
	return &v3Client{c: c, slots: make(chan struct{}, 64)}, nil
}

// publish sends one message; QoS 1 is pipelined, up to 64 awaiting PUBACK
// (what Herald and Mosquitto grant as receive maximum).
func (v *v3Client) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	if qos == 0 {
		tok := v.c.Publish(topic, 0, false, payload)
		tok.Wait()
		return tok.Error()
	}
	select {
	case v.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err() // not sent: the caller must not count it
	}
	tok := v.c.Publish(topic, qos, false, payload)
	go func() {
		tok.WaitTimeout(30 * time.Second)
		<-v.slots
	}()
	return nil
}

func (v *v3Client) subscribe(filter string, qos byte, onMsg func([]byte)) error {
	tok := v.c.Subscribe(filter, qos, func(_ mqtt3.Client, m mqtt3.Message) { onMsg(m.Payload()) })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("subscribe %s: %v", filter, tok.Error())
	}
	return nil
}

func (v *v3Client) close() { v.c.Disconnect(100) }
