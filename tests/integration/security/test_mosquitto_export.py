"""`fleethub export mosquitto-auth` read by a real Mosquitto 2.0: real clients allowed and refused."""

from __future__ import annotations

import asyncio
import csv
import io
import queue
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from fleethub.cli import main
from fleethub.mosquitto_auth import mosquitto_hash
from tests.helpers import need_program
from tests.integration.security.client import Client
from tests.integration.security.external_brokers import mosquitto


async def fleethub(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def read_csv(path: Path) -> dict[str, str]:
    with path.open(newline="") as fh:
        return {row["vehicle_id"]: row["secret"] for row in csv.DictReader(fh)}


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.url = f"sqlite:///{tmp_path / 'hub.db'}"
        self.out = tmp_path / "mosquitto"
        self.clients: list[Client] = []

    async def provision(self, fleet: str, *vehicle_ids: str) -> dict[str, str]:
        source = self.tmp / f"{fleet}.csv"
        source.write_text("vehicle_id\n" + "".join(f"{v}\n" for v in vehicle_ids))
        secrets = self.tmp / f"{fleet}-secrets.csv"
        code = await fleethub(
            "vehicles", "import", str(source), "--fleet", fleet, "--output", str(secrets), "--database", self.url
        )
        assert code == 0
        return read_csv(secrets)

    async def export(self, *extra: str) -> int:
        return await fleethub("export", "mosquitto-auth", "--out", str(self.out), "--database", self.url, *extra)

    async def client(self, port: int, name: str, password: str) -> tuple[Client, int]:
        client = Client(port, name, username=name, password=password)
        self.clients.append(client)
        return client, await client.connect()


@pytest.fixture
def setup(tmp_path: Path):
    made = Setup(tmp_path)
    yield made
    for client in made.clients:
        client.close()


def secrets_file(path: Path, rows: Sequence[tuple[str, str, str]]) -> Path:
    """A secrets CSV as `vehicles import` writes it, with user rows (username,secret) after."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["vehicle_id", "username", "secret"])
        writer.writerows(rows)
    return path


async def no_message_then(listener: Client, sender: Client, denied_topic: str, allowed_topic: str) -> None:
    """`denied_topic` never reaches `listener`, shown by `allowed_topic`, sent after it, arriving first."""
    await sender.publish(denied_topic, {"soc": 1})
    await sender.publish(allowed_topic, {"soc": 2})
    topic, _ = await listener.next_message(wait_s=15)
    assert topic == allowed_topic


async def test_mosquitto_reads_the_exported_files(setup: Setup, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    need_program("mosquitto")
    fleet_a = await setup.provision("a", "car-a1", "car-a2")
    fleet_b = await setup.provision("b", "car-b1")
    monkeypatch.setattr("sys.stdin", io.StringIO("ana-password-1\n"))
    assert await fleethub("users", "add", "ana", "--role", "viewer", "--fleet", "a", "--password-stdin",
                          "--database", setup.url) == 0  # fmt: skip
    assert await fleethub("users", "add", "root", "--role", "admin", "--database", setup.url) == 0
    # The last token printed is root's (ana got one too).
    root_token = [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines() if "API token" in line][-1]
    everything = {**fleet_a, **fleet_b}
    rows = [(vid, "", secret) for vid, secret in everything.items()]
    rows += [("", "ana", "ana-password-1"), ("", "root", root_token)]
    assert await setup.export("--secrets", str(secrets_file(setup.tmp / "all.csv", rows))) == 0
    passwords, acl = setup.out / "passwords", setup.out / "acl"
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    assert "user car-a1\ntopic write vehicles/car-a1/telemetry\n" in acl.read_text()

    with mosquitto(setup.tmp, passwords, acl) as port:
        car, rc = await setup.client(port, "car-a1", fleet_a["car-a1"])
        assert rc == 0
        root, rc = await setup.client(port, "root", root_token)
        assert rc == 0
        ana, rc = await setup.client(port, "ana", "ana-password-1")
        assert rc == 0
        # Refused: a wrong secret, another vehicle's secret, an unknown name.
        assert (await setup.client(port, "car-a2", fleet_a["car-a1"]))[1] != 0
        assert (await setup.client(port, "car-a1", "wrong"))[1] != 0
        assert (await setup.client(port, "nobody", "whatever"))[1] != 0

        assert await root.subscribe("vehicles/+/telemetry") == 1
        assert await car.subscribe("vehicles/car-a1/commands/+") == 1
        # A vehicle publishes on its own topics only; the hub's dashboard sees the rest never arrive.
        await no_message_then(root, car, "vehicles/car-b1/telemetry", "vehicles/car-a1/telemetry")
        # Users do not publish: the hub alone sends commands.
        await ana.publish("vehicles/car-a1/commands/c1", {"name": "unlock"})
        await root.publish("vehicles/car-a1/commands/c2", {"name": "unlock"})
        await car.publish("vehicles/car-a1/commands/c3", {"name": "unlock"})
        await car.publish("vehicles/car-a1/telemetry", {"soc": 3})
        assert (await root.next_message(wait_s=15))[0] == "vehicles/car-a1/telemetry"
        with pytest.raises(queue.Empty):
            car.messages.get_nowait()

        # A viewer of fleet a sees fleet a's vehicles, not fleet b's.
        await ana.subscribe("vehicles/car-b1/telemetry")
        await ana.subscribe("vehicles/car-a1/telemetry")
        other, rc = await setup.client(port, "car-b1", fleet_b["car-b1"])
        assert rc == 0
        # Acknowledged before the next is sent: Mosquitto has dealt with it when car-a1's arrives.
        await other.publish("vehicles/car-b1/telemetry", {"soc": 4})
        await car.publish("vehicles/car-a1/telemetry", {"soc": 5})
        assert (await ana.next_message(wait_s=15))[0] == "vehicles/car-a1/telemetry"
        with pytest.raises(queue.Empty):
            ana.messages.get_nowait()


async def test_export_refuses_stale_or_missing_secrets_and_can_issue_new_ones(setup: Setup, capsys) -> None:
    fleet_a = await setup.provision("a", "car-1", "car-2")
    only_one = secrets_file(setup.tmp / "one.csv", [("car-1", "", fleet_a["car-1"])])
    assert await setup.export("--secrets", str(only_one)) == 1
    assert "no secret in --secrets (first: car-2)" in capsys.readouterr().err
    stale = secrets_file(setup.tmp / "stale.csv", [("car-1", "", "not-it"), ("car-2", "", fleet_a["car-2"])])
    assert await setup.export("--secrets", str(stale)) == 1
    assert "do not match the hub (first: car-1)" in capsys.readouterr().err
    assert not (setup.out / "passwords").exists()

    # --issue-secrets: car-2 gets a new secret, its old one stops working, car-1 keeps its own.
    assert await setup.export("--secrets", str(only_one), "--issue-secrets") == 0
    issued = read_csv(setup.out / "issued-secrets.csv")
    assert list(issued) == ["car-2"]
    assert issued["car-2"] != fleet_a["car-2"]
    with mosquitto(setup.tmp, setup.out / "passwords", setup.out / "acl") as port:
        assert (await setup.client(port, "car-2", issued["car-2"]))[1] == 0
        assert (await setup.client(port, "car-1", fleet_a["car-1"]))[1] == 0
        assert (await setup.client(port, "car-2", fleet_a["car-2"]))[1] != 0
    # --skip-check trusts the CSV: the stale one is written as given.
    assert await setup.export("--secrets", str(stale), "--skip-check") == 0
    assert (setup.out / "passwords").read_text().count("\n") == 2


def test_password_lines_are_mosquitto_passwd_lines(tmp_path: Path) -> None:
    """mosquitto_passwd itself writes the same shape, and our line for a known salt is stable."""
    import subprocess

    program = need_program("mosquitto_passwd")
    path = tmp_path / "pw"
    path.write_text("")
    subprocess.run([program, "-b", str(path), "someone", "pw"], check=True)
    theirs = path.read_text().strip().split(":", 1)[1]
    ours = mosquitto_hash("pw", salt=b"\0" * 12)
    assert theirs.split("$")[:3] == ours.split("$")[:3] == ["", "7", "101"]
    assert len(theirs) == len(ours)
    assert mosquitto_hash("pw", salt=b"\0" * 12) == ours
