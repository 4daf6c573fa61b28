"""`fleethub vehicles ...` and `fleethub users ...`: provisioning and users against the configured store.

These work with the hub stopped or running (SQLite in WAL mode, or PostgreSQL). A
revocation made here stops the vehicle's next login; to disconnect it at once use the
API (`POST /api/v1/vehicles/{vid}/credentials/revoke`), which goes through the running broker.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime

from fleethub.settings import Settings
from fleethub.stores import database, history_options
from security import ALL_FLEETS, CLI, DEFAULT_FLEET, Role, SecurityService, security_store
from twin import Store, TwinState, merge_patch, prune_empty, twin_store


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], add_common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Add `vehicles` and `users`; `add_common` adds the --config and --database flags to each command."""
    vehicles = sub.add_parser("vehicles", help="provision vehicles: add, import, rotate, revoke, list")
    vsub = vehicles.add_subparsers(dest="action", required=True)
    add = vsub.add_parser("add", help="provision one vehicle and print its MQTT secret (shown once)")
    add.add_argument("vehicle_id")
    add.add_argument("--fleet", default=DEFAULT_FLEET)
    add.add_argument("--tag", action="append", default=[], metavar="NAME=VALUE")
    imp = vsub.add_parser("import", help="provision every vehicle of a CSV (header vehicle_id[,tag columns])")
    imp.add_argument("file", help="CSV file, or - for standard input")
    imp.add_argument("--fleet", default=DEFAULT_FLEET)
    imp.add_argument("--output", default="-", help="where to write vehicle_id,fleet,secret (default stdout)")
    for name, text in (("rotate", "issue a new secret (shown once)"), ("revoke", "revoke a vehicle's secret")):
        p = vsub.add_parser(name, help=text)
        p.add_argument("vehicle_id")
    lst = vsub.add_parser("list", help="provisioned vehicles and whether their credentials are active")
    lst.add_argument("--fleet")
    users = sub.add_parser("users", help="users and API tokens: add, token, list, remove")
    usub = users.add_subparsers(dest="action", required=True)
    uadd = usub.add_parser("add", help="create a user and print an API token for it (shown once)")
    uadd.add_argument("name")
    uadd.add_argument("--role", choices=[r.value for r in Role], required=True)
    uadd.add_argument("--fleet", action="append", default=[], help="repeatable; '*' is every fleet (admins default)")
    uadd.add_argument("--password-stdin", action="store_true", help="read an MQTT password from standard input")
    uadd.add_argument(
        "--token-ttl-days", type=float, help="lifetime of the printed token (default auth.token_ttl_days)"
    )
    tok = usub.add_parser("token", help="issue another API token for a user (shown once)")
    tok.add_argument("name")
    tok.add_argument("--ttl-days", type=float)
    tok.add_argument("--label", default="")
    usub.add_parser("list", help="users, roles and fleets")
    rm = usub.add_parser("remove", help="delete a user and revoke their tokens")
    rm.add_argument("name")
    for parser in (add, imp, *(vsub.choices[n] for n in ("rotate", "revoke", "list")), uadd, tok, rm):
        add_common(parser)
    add_common(usub.choices["list"])


@contextlib.asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[tuple[SecurityService, Store]]:
    db = database(settings.store)
    twins = twin_store(db, history_options(settings.store))
    async with db, twins as store, security_store(db) as sec_store:
        service = SecurityService(
            sec_store,
            token_ttl_s=settings.auth.token_ttl_days * 86400,
            max_token_ttl_s=settings.auth.max_token_ttl_days * 86400,
            verify_cache_s=0,
        )

        async def provision_twin(vehicle_id: str, fleet: str, tags: Mapping[str, str]) -> None:
            now = time.time()
            twin = await store.load_twin(vehicle_id) or TwinState(vehicle_id, created_at=now, updated_at=now)
            twin.fleet = fleet
            if tags:
                twin.tags = prune_empty(merge_patch(twin.tags, dict(tags)))
            twin.version += 1
            twin.updated_at = now
            await store.write_batch([twin], [])

        service.on_provision.append(provision_twin)
        yield service, store


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


async def run_vehicles(settings: Settings, args: argparse.Namespace) -> int:
    async with _opened(settings) as (security, _):
        match args.action:
            case "add":
                tags = dict(t.split("=", 1) for t in args.tag if "=" in t)
                made = await security.provision(args.vehicle_id, args.fleet, actor=CLI, tags=tags)
                print(f"vehicle {made.vehicle_id} provisioned in fleet {made.fleet}")
                print(f"  MQTT username: {made.vehicle_id}")
                print(f"  MQTT password: {made.secret}")
                print("The secret is shown only now; the hub keeps its argon2 hash.")
            case "import":
                if args.file == "-":
                    text = sys.stdin.read()
                else:
                    with open(args.file, encoding="utf-8") as source:  # noqa: ASYNC230
                        text = source.read()
                made_all = await security.provision_csv(text, args.fleet, actor=CLI)
                out = io.StringIO()
                writer = csv.writer(out)
                writer.writerow(["vehicle_id", "fleet", "secret"])
                for made in made_all:
                    writer.writerow([made.vehicle_id, made.fleet, made.secret])
                if args.output == "-":
                    sys.stdout.write(out.getvalue())
                else:
                    with open(args.output, "w", encoding="utf-8", opener=_private) as fh:  # noqa: ASYNC230
                        fh.write(out.getvalue())
                print(f"{len(made_all)} vehicles provisioned in fleet {args.fleet}", file=sys.stderr)
            case "rotate":
                made = await security.rotate(args.vehicle_id, actor=CLI)
                print(f"vehicle {made.vehicle_id}: new MQTT password: {made.secret}")
                print("The secret is shown only now; the old one no longer works.")
            case "revoke":
                await security.revoke(args.vehicle_id, actor=CLI)
                print(f"vehicle {args.vehicle_id}: credentials revoked (its next login is refused)")
            case "list":
                for c in await security.credentials(args.fleet):
                    state = "active" if c.active else f"revoked {_when(c.revoked_at)}"
                    print(f"{c.vehicle_id}\t{c.fleet}\t{state}")
    return 0


async def run_users(settings: Settings, args: argparse.Namespace) -> int:
    async with _opened(settings) as (security, _):
        match args.action:
            case "add":
                role = Role(args.role)
                fleets = tuple(args.fleet) or ((ALL_FLEETS,) if role is Role.ADMIN else ())
                password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
                user = await security.add_user(args.name, role, fleets, actor=CLI, password=password)
                ttl = None if args.token_ttl_days is None else args.token_ttl_days * 86400
                issued = await security.issue_token(user.name, actor=CLI, ttl_s=ttl, label="cli")
                print(f"user {user.name} ({user.role.value}, fleets {', '.join(user.fleets)}) created")
                print(f"  API token: {issued.secret}")
                print(f"  expires:   {_when(issued.token.expires_at)}")
                print("The token is shown only now: curl -H 'Authorization: Bearer <token>' ...")
            case "token":
                ttl = None if args.ttl_days is None else args.ttl_days * 86400
                issued = await security.issue_token(args.name, actor=CLI, ttl_s=ttl, label=args.label)
                print(f"  API token: {issued.secret}")
                print(f"  expires:   {_when(issued.token.expires_at)}")
            case "list":
                for u in await security.users():
                    print(f"{u.name}\t{u.role.value}\t{','.join(u.fleets)}")
            case "remove":
                await security.remove_user(args.name, actor=CLI)
                print(f"user {args.name} removed; their tokens are revoked")
    return 0


def _private(path: str, flags: int) -> int:
    # Secrets on disk: readable by their owner only.
    return os.open(path, flags, 0o600)
