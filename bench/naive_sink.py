"""The afternoon baseline: a paho-mqtt subscriber that inserts every message into PostgreSQL.

`python -m bench.naive_sink --port P --dsn URL` subscribes to `vehicles/+/telemetry` at
QoS 1 on a broker (Mosquitto in the benchmark) and runs one INSERT per message with
autocommit, as a first version usually does. Counts and the publish-to-insert latency
(from the payload's `sent` time) are printed as JSON every second and on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.load import Histogram

SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (
    id bigserial PRIMARY KEY,
    vehicle_id text NOT NULL,
    ts double precision,
    received_at timestamptz NOT NULL DEFAULT now(),
    payload jsonb NOT NULL
)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True)
    args = parser.parse_args()

    db = psycopg.connect(args.dsn, autocommit=True)
    db.execute(SCHEMA)
    lock = threading.Lock()
    counts: dict[str, Any] = {"received": 0, "inserted": 0, "errors": 0}
    latency = Histogram()
    subscribed = threading.Event()

    def on_connect(client: mqtt.Client, _userdata: Any, _flags: Any, _rc: Any, _props: Any = None) -> None:
        client.subscribe("vehicles/+/telemetry", qos=1)

    def on_subscribe(*_args: Any) -> None:
        subscribed.set()

    def on_message(_client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with lock:
            counts["received"] += 1
        try:
            body = json.loads(msg.payload)
            vehicle_id = msg.topic.split("/")[1]
            db.execute(
                "INSERT INTO telemetry (vehicle_id, ts, payload) VALUES (%s, %s, %s)",
                (vehicle_id, body.get("ts"), msg.payload.decode()),
            )
        except (ValueError, psycopg.Error):
            with lock:
                counts["errors"] += 1
            return
        sent = body.get("sent")
        with lock:
            counts["inserted"] += 1
            if isinstance(sent, (int, float)):
                latency.add(max(0.0, time.time() - sent))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="naive-sink", clean_session=True)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", args.port, keepalive=60)
    client.loop_start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def emit(event: str) -> None:
        with lock:
            line = {"event": event, "t": time.time(), **counts, "latency": latency.to_dict()}
        print(json.dumps(line), flush=True)

    subscribed.wait(10)
    emit("started")
    while not stop.wait(1.0):
        emit("counts")
    client.loop_stop()
    client.disconnect()
    db.close()
    emit("stopped")


if __name__ == "__main__":
    main()
