// MQTT.js over WebSocket (GET /mqtt, subprotocol "mqtt") against Herald:
// publish and subscribe at QoS 0, 1 and 2 with MQTT 3.1.1 and 5.0, the
// subscriber on one edge and the publisher on the other. The edges come
// from HERALD_WS_A and HERALD_WS_B (tests/mqtt sets them); by default the
// local cluster's (`make cluster-up`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';

const edgeA = process.env.HERALD_WS_A || 'ws://127.0.0.1:8080/mqtt';
const edgeB = process.env.HERALD_WS_B || 'ws://127.0.0.1:8090/mqtt';

async function connect(url, protocolVersion, clientId) {
  return mqtt.connectAsync(url, { protocolVersion, clientId, clean: true, reconnectPeriod: 0, connectTimeout: 5000 });
}

// Each case ensures a message published at a QoS reaches a subscriber
// granted that QoS, at that QoS, across edges, over WebSocket.
for (const protocolVersion of [4, 5]) {
  for (const qos of [0, 1, 2]) {
    test(`MQTT.js v${protocolVersion === 4 ? '3.1.1' : '5'} QoS ${qos} over WebSocket across edges`, async () => {
      const id = `js-v${protocolVersion}-q${qos}-${process.pid}`;
      const topic = `mqttjs/${id}`;
      const sub = await connect(edgeA, protocolVersion, `${id}-sub`);
      const pub = await connect(edgeB, protocolVersion, `${id}-pub`);
      try {
        const granted = await sub.subscribeAsync(topic, { qos });
        assert.equal(granted[0].qos, qos);
        const received = new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no message within 5s')), 5000);
          sub.on('message', (t, payload, packet) => {
            clearTimeout(timer);
            resolve({ t, payload: payload.toString(), qos: packet.qos });
          });
        });
        await pub.publishAsync(topic, `hello ${qos}`, { qos });
        const m = await received;
        assert.deepEqual(m, { t: topic, payload: `hello ${qos}`, qos });
      } finally {
        await Promise.all([sub.endAsync(), pub.endAsync()]);
      }
    });
  }
}
