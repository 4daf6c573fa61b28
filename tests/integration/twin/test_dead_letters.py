"""A value the database refuses is found, quarantined and reported; everyone else's data commits."""

from __future__ import annotations

import asyncio
import base64
import sqlite3

# A real refusal by the real database: SQLite aborts the insert as a constraint violation.
POISON_TRIGGER = """
CREATE TRIGGER refuse_poison BEFORE INSERT ON history
WHEN NEW.data LIKE '%poison%'
BEGIN SELECT RAISE(ABORT, 'poison is not allowed here'); END
"""
VEHICLES = 4
MESSAGES_EACH = 30


def _install_trigger(hub) -> None:
    conn = sqlite3.connect(hub.database.path)
    try:
        conn.execute(POISON_TRIGGER)
        conn.commit()
    finally:
        conn.close()


async def test_a_refused_value_is_quarantined_and_the_rest_commits(hub, http, clients):
    _install_trigger(hub)
    cars = [await clients(f"dl-{n}").connect() for n in range(VEHICLES)]
    await cars[0].subscribe("vehicles/dl-0/errors")
    infos = []
    for seq in range(MESSAGES_EACH):
        for n, car in enumerate(cars):
            infos.append(car.publish(f"vehicles/dl-{n}/telemetry", {"seq": seq, "soc": seq}))
        if seq == MESSAGES_EACH // 2:
            infos.append(cars[0].publish("vehicles/dl-0/telemetry", {"seq": 10_000, "note": "poison"}))
    for info in infos:
        await asyncio.to_thread(info.wait_for_publish, 20)
        assert info.is_published()

    # The sender is told why.
    _, notice = await cars[0].next_message("/errors", wait_s=20)
    assert notice["error"] == "store_rejected"
    assert "poison is not allowed" in notice["detail"]

    # Every other message is stored, and the twins hold the last good values.
    for n in range(VEHICLES):
        rows = (await http.get(f"/api/v1/vehicles/dl-{n}/history", params={"limit": 1000})).json()["items"]
        assert sorted(r["seq"] for r in rows) == list(range(MESSAGES_EACH))
        twin = (await http.get(f"/api/v1/vehicles/dl-{n}/twin")).json()
        assert twin["reported"]["soc"] == MESSAGES_EACH - 1
        assert "note" not in twin["reported"]

    # Kept in the dead-letter table, visible in the API, /healthz and the metrics.
    page = (await http.get("/api/v1/dead-letters")).json()
    [letter] = page["items"]
    assert letter["vehicle_id"] == "dl-0"
    assert letter["topic"] == "telemetry"
    assert letter["reason"] == "store_rejected"
    assert b"poison" in base64.b64decode(letter["payload_base64"])
    health = (await http.get("/healthz")).json()
    assert health["status"] == "ok"
    assert health["components"]["ingest"]["detail"]["dead_letters"] == 1
    metrics = (await http.get("/metrics")).text
    assert 'fleethub_ingest_dead_letters_total{kind="telemetry"} 1.0' in metrics
