"""Real external brokers for the tests: Mosquitto with given files, a RabbitMQ node of its own.

Each runs in its own process group on ephemeral ports and is killed, group and all, when
the test ends.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import need_program


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text(errors='replace')[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port} after {wait_s} s: {log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def mosquitto(workdir: Path, password_file: Path, acl_file: Path) -> Iterator[int]:
    """Mosquitto 2.0 on a free port with only `password_file` and `acl_file` deciding; yields the port."""
    program = need_program("mosquitto")
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous false\n"
        # A vehicle's client id is its name, as the embedded broker requires.
        "use_username_as_clientid true\n"
        f"password_file {password_file}\n"
        f"acl_file {acl_file}\n"
        "persistence false\n"
        # Run as whoever runs the tests, who owns the exported files (0600); Mosquitto would switch to its own user.
        f"user {getpass.getuser()}\n"
        "log_dest stderr\n"
        "log_type all\n"
    )
    log = workdir / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([program, "-c", str(conf)], stdout=out, stderr=out, start_new_session=True)
    try:
        _wait_listening(port, proc, log, 20)
        yield port
    finally:
        _stop(proc)


@contextlib.contextmanager
def rabbitmq(workdir: Path, hub_url: str, secret: str) -> Iterator[int]:
    """A RabbitMQ node of its own (MQTT plugin, HTTP auth backend pointing at the hub); yields its MQTT port.

    The machine's own node is left alone: this one has its own name, ports, data directory,
    Erlang cookie (HOME) and plugins file.
    """
    need_program("rabbitmq-server")
    server = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    if not server.exists():
        server = Path(need_program("rabbitmq-server"))
    mqtt_port, amqp_port, dist_port = free_port(), free_port(), free_port()
    base = f"http://broker:{secret}@{hub_url.removeprefix('http://')}/broker-auth/rabbitmq"
    (workdir / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{amqp_port}\n"
        f"mqtt.listeners.tcp.default = 127.0.0.1:{mqtt_port}\n"
        "mqtt.allow_anonymous = false\n"
        "auth_backends.1 = http\n"
        "auth_http.http_method = post\n"
        f"auth_http.user_path = {base}/user\n"
        f"auth_http.vhost_path = {base}/vhost\n"
        f"auth_http.resource_path = {base}/resource\n"
        f"auth_http.topic_path = {base}/topic\n"
    )
    (workdir / "enabled_plugins").write_text("[rabbitmq_mqtt,rabbitmq_auth_backend_http].\n")
    env = {
        **os.environ,
        "HOME": str(workdir),
        "RABBITMQ_NODENAME": f"fleethub-test-{mqtt_port}@localhost",
        "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"),
        "RABBITMQ_DIST_PORT": str(dist_port),
    }
    # Its own Erlang port mapper on a free port, stopped afterwards: a node would otherwise start
    # the machine's epmd daemon, which outlives the test, or register with the system node's.
    epmd_port = free_port()
    env["ERL_EPMD_PORT"] = str(epmd_port)
    epmd_log = workdir / "epmd.out"
    with epmd_log.open("wb") as out:
        epmd = subprocess.Popen(
            [need_program("epmd"), "-port", str(epmd_port)], stdout=out, stderr=out, start_new_session=True
        )
    try:
        _wait_listening(epmd_port, epmd, epmd_log, 20)
        log = workdir / "rabbitmq.out"
        with log.open("wb") as out:
            proc = subprocess.Popen([str(server)], stdout=out, stderr=out, env=env, start_new_session=True)
        try:
            # A node takes 10-30 s to boot on a busy 2-core machine.
            _wait_listening(mqtt_port, proc, log, 120)
            yield mqtt_port
        finally:
            _stop(proc)
    finally:
        _stop(epmd)
