"""`make vendor`: fetch the console's front-end libraries from the npm registry into `web-ui/vendor/`.

Only for front-end work: the fetched files are committed, so installing or running the
hub never needs the network or Node.js. Each tarball is checked against the sha512
integrity pinned in `vendor.toml` before anything is written.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import tomllib
import urllib.request
from pathlib import Path

HERE = Path(__file__).parent
VENDOR = HERE / "web-ui" / "vendor"
REGISTRY = "https://registry.npmjs.org"


def tarball_url(name: str, version: str) -> str:
    return f"{REGISTRY}/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"


def check_integrity(data: bytes, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise SystemExit(f"unsupported integrity algorithm {algorithm!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise SystemExit(f"integrity mismatch: expected {expected}, got {actual}")


def vendor(name: str, spec: dict[str, object]) -> None:
    version = str(spec["version"])
    url = tarball_url(name, version)
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a fixed https registry URL
        data = response.read()
    check_integrity(data, str(spec["integrity"]))
    target = VENDOR / str(spec.get("dir", name))
    target.mkdir(parents=True, exist_ok=True)
    files = spec["files"]
    if not isinstance(files, dict):
        raise SystemExit(f"{name}: files must be a table of tarball path = vendored name")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for source, dest in files.items():
            member = tar.extractfile(f"package/{source}")
            if member is None:
                raise SystemExit(f"{name}@{version} has no file {source}")
            (target / dest).write_bytes(member.read())
    print(f"{name}@{version} -> {target.relative_to(HERE)}", file=sys.stderr)


def main() -> None:
    pinned = tomllib.loads((HERE / "vendor.toml").read_text())
    for name, spec in pinned.items():
        vendor(name, spec)
    listing = "".join(f"{name}@{spec['version']}  {spec['license']}\n" for name, spec in pinned.items())
    (VENDOR / "VERSIONS.txt").write_text(listing)


if __name__ == "__main__":
    main()
