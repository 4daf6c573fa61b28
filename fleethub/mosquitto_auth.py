"""`fleethub export mosquitto-auth`: a password file and an ACL file for Mosquitto 2.0.

Mosquitto checks logins against its own `password_file` (PBKDF2-SHA512, `$7$` lines as
`mosquitto_passwd` writes them) and topics against its `acl_file`. fleethub keeps only
argon2 hashes of vehicle secrets and passwords, which cannot be turned into anything
else, so the export needs the secrets themselves: the CSV that `fleethub vehicles
import` printed (`vehicle_id,fleet,secret`; rows with a `username` column instead of
`vehicle_id` give users' passwords or API tokens). Each secret is checked against the
hub before it is written, so a stale CSV is refused rather than exported
(`--skip-check` trusts the CSV, for fleets where an argon2 check per vehicle takes too long). A vehicle
without a secret in the CSV stops the export, unless `--issue-secrets` is given: it
then gets a new secret (its old one stops working, as with `fleethub vehicles rotate`),
written to `issued-secrets.csv` beside the files for the vehicles to be given. A user
without a password in the CSV keeps their ACL lines and is listed, so it can be added
with `mosquitto_passwd -b passwords NAME PASSWORD`.

The ACL lines are `broker.grants_of` for every active vehicle and user, the same lists
the embedded broker's rules give EMQX.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import hashlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from broker import Grants, grants_of
from fleethub.settings import Settings
from fleethub.stores import database
from security import CLI, Principal, SecurityService, security_store

# What mosquitto_passwd (2.0) writes: PBKDF2-HMAC-SHA512, 101 rounds, a 12-byte salt.
_ITERATIONS = 101
_SALT_BYTES = 12


def mosquitto_hash(secret: str, *, salt: bytes | None = None, iterations: int = _ITERATIONS) -> str:
    """A password as a `$7$` line of a Mosquitto 2.0 password file (without the `name:`)."""
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def acl_lines(name: str, grants: Grants) -> list[str]:
    """One `user` block of a Mosquitto acl_file; `read` lets a client subscribe and receive."""
    lines = [f"user {name}"]
    for grant in grants.grants:
        lines.append(f"topic {'write' if grant.action == 'publish' else 'read'} {grant.topic_filter}")
    return lines


@dataclass(frozen=True, slots=True)
class Exported:
    vehicles: int
    users_with_password: int
    users_without_password: list[str]
    issued: int


class ExportRefused(Exception):
    pass


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], add_common: Callable[[argparse.ArgumentParser], None]
) -> None:
    export = sub.add_parser("export", help="export credentials for an external broker")
    esub = export.add_subparsers(dest="what", required=True)
    mosq = esub.add_parser(
        "mosquitto-auth", help="a Mosquitto password_file and acl_file for every active vehicle and user"
    )
    mosq.add_argument("--out", required=True, metavar="DIR", help="where to write passwords and acl")
    mosq.add_argument(
        "--secrets",
        metavar="CSV",
        help="vehicle_id,secret rows (the output of `fleethub vehicles import`) and/or username,secret rows",
    )
    mosq.add_argument(
        "--issue-secrets",
        action="store_true",
        help="give every vehicle missing from --secrets a new secret (its old one stops working)",
    )
    mosq.add_argument(
        "--skip-check",
        action="store_true",
        help="write the secrets without checking each against the hub (an argon2 check, tens of ms of CPU each)",
    )
    add_common(mosq)


def read_secrets(path: str | None) -> dict[str, str]:
    if path is None:
        return {}
    found: dict[str, str] = {}
    with open(path, newline="") as fh:
        for number, row in enumerate(csv.DictReader(fh), start=2):
            name = (row.get("vehicle_id") or row.get("username") or "").strip()
            secret = (row.get("secret") or "").strip()
            if not name or not secret:
                raise ExportRefused(f"{path} line {number}: needs vehicle_id (or username) and secret")
            found[name] = secret
    return found


async def export(
    security: SecurityService, out: Path, secrets: Mapping[str, str], *, issue: bool, check: bool = True
) -> Exported:
    vehicles = [c for c in await security.credentials() if c.active]
    users = [u for u in await security.users() if not u.disabled]
    missing = [c.vehicle_id for c in vehicles if c.vehicle_id not in secrets]
    if missing and not issue:
        raise ExportRefused(
            f"{len(missing)} active vehicles have no secret in --secrets (first: {', '.join(missing[:5])}); "
            "pass the CSV printed when they were provisioned or rotated, or --issue-secrets"
        )
    # Unless --skip-check, every secret is checked against the hub (SecurityService runs a few argon2 at once).
    given = [c for c in vehicles if c.vehicle_id in secrets]
    if check:
        checks = await asyncio.gather(*(security.login_vehicle(c.vehicle_id, secrets[c.vehicle_id]) for c in given))
        stale = [c.vehicle_id for c, ok in zip(given, checks, strict=True) if ok is None]
    else:
        stale = []
    if stale:
        raise ExportRefused(
            f"{len(stale)} secrets in --secrets do not match the hub (first: {', '.join(stale[:5])}); "
            "they were rotated since, or the CSV belongs to another hub"
        )
    passwords = {c.vehicle_id: secrets[c.vehicle_id] for c in given}
    known_users = [u for u in users if u.name in secrets]
    if check:
        user_checks = await asyncio.gather(*(security.login_user(u.name, secrets[u.name]) for u in known_users))
        for user, ok in zip(known_users, user_checks, strict=True):
            if ok is None:
                raise ExportRefused(f"the secret given for user '{user.name}' is not their password or a valid token")
    passwords |= {u.name: secrets[u.name] for u in known_users}
    # Only once everything given has checked out: a refused export changes no vehicle's secret.
    issued: dict[str, str] = {}
    for vid in missing:
        issued[vid] = (await security.rotate(vid, actor=CLI)).secret
    passwords |= issued
    fleets = {c.vehicle_id: c.fleet for c in vehicles}
    acl = ["# Written by `fleethub export mosquitto-auth`: the hub's topic ACL, one block per client.", ""]
    for c in vehicles:
        acl += [*acl_lines(c.vehicle_id, grants_of(Principal.vehicle(c.vehicle_id, c.fleet))), ""]
    for u in users:
        acl += [*acl_lines(u.name, grants_of(Principal.user(u.name, u.role, u.fleets), fleets)), ""]
    files = {
        "acl": ("\n".join(acl), 0o644),
        "passwords": ("".join(f"{n}:{mosquitto_hash(s)}\n" for n, s in sorted(passwords.items())), 0o600),
    }
    if issued:
        rows = "".join(f"{vid},{fleets[vid]},{secret}\n" for vid, secret in sorted(issued.items()))
        files["issued-secrets.csv"] = ("vehicle_id,fleet,secret\n" + rows, 0o600)
    await asyncio.to_thread(_write_all, out, files)
    without = sorted(u.name for u in users if u.name not in passwords)
    return Exported(len(vehicles), len(known_users), without, len(issued))


def _write_all(out: Path, files: Mapping[str, tuple[str, int]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, (text, mode) in files.items():
        _write(out / name, text, mode)


def _write(path: Path, text: str, mode: int) -> None:
    # Written beside and renamed, so Mosquitto never reads half a file; secrets readable by their owner only.
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(partial, mode)
    partial.replace(path)


async def run_export(settings: Settings, args: argparse.Namespace) -> int:
    try:
        secrets = read_secrets(args.secrets)
    except (OSError, ExportRefused) as exc:
        print(f"fleethub export: {exc}", file=sys.stderr)
        return 1
    async with database(settings.store) as db, security_store(db) as store:
        security = SecurityService(store, verify_cache_s=0)
        try:
            done = await export(security, Path(args.out), secrets, issue=args.issue_secrets, check=not args.skip_check)
        except ExportRefused as exc:
            print(f"fleethub export: {exc}", file=sys.stderr)
            return 1
    print(f"wrote {args.out}/passwords and {args.out}/acl: {done.vehicles} vehicles, {done.users_with_password} users")
    if done.issued:
        print(f"{done.issued} vehicles got new secrets: {args.out}/issued-secrets.csv (give them to the vehicles)")
    for name in done.users_without_password:
        print(f"user {name}: ACL written, no password (mosquitto_passwd -b {args.out}/passwords {name} PASSWORD)")
    return 0
