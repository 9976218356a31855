"""Install mpstore into Pythonista: open this file in Pythonista and run it (or paste it in).

Standard library only. It takes mpstore from, in this order:

1. a URL given as the first argument (Pythonista: long-press the run button, "Run with
   arguments") or in ``URL`` below: a release wheel (``mpstore-X.Y.Z-py3-none-any.whl``) or a
   zip of it; add ``--sha256 HEX`` to check what was downloaded;
2. otherwise the newest ``mpstore-*.whl`` (or ``mpstore-*.zip``) found in Documents,
   Documents/Inbox (where "Open in Pythonista" and AirDrop put shared files) or beside this
   script.

It copies only the ``mpstore/`` package out of the archive (nothing else, and no path that
leaves it) into ``~/Documents/site-packages-3`` (Pythonista 3's own folder, on its import path),
replacing an older copy, then imports it and prints the version and the CRDT engine. Run it again
to upgrade. Outside Pythonista, ``--target DIR`` names the folder (the tests use it).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile

#: A release wheel or zip to fetch when no argument is given (leave empty to use local files).
URL = ""

PACKAGE = "mpstore"
MAX_ARCHIVE = 64 * 1024 * 1024


def documents() -> str:
    """Pythonista's Documents folder (the home folder elsewhere)."""
    return os.path.join(os.path.expanduser("~"), "Documents")


def default_target() -> str:
    """Pythonista 3's user site-packages folder."""
    return os.path.join(documents(), "site-packages-3")


def find_local() -> str | None:
    """The newest mpstore wheel or zip in Documents, Documents/Inbox or beside this script."""
    here = os.path.dirname(os.path.abspath(__file__))
    found = []
    for folder in (documents(), os.path.join(documents(), "Inbox"), here):
        for pattern in ("mpstore-*.whl", "mpstore-*.zip", "mpstore.zip"):
            found.extend(glob.glob(os.path.join(folder, pattern)))
    return max(found, key=os.path.getmtime) if found else None


def download(url: str, folder: str) -> str:
    """Fetch ``url`` into ``folder`` (at most MAX_ARCHIVE bytes); return the file's path."""
    if not url.startswith("https://"):
        raise SystemExit(f"refusing {url!r}: only https:// URLs are fetched")
    name = os.path.basename(url.split("?")[0]) or "mpstore.zip"
    path = os.path.join(folder, name)
    with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
        total = 0
        while True:
            chunk = response.read(1 << 16)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_ARCHIVE:
                raise SystemExit(f"{url} is larger than {MAX_ARCHIVE} bytes: not an mpstore release")
            out.write(chunk)
    return path


def sha256(path: str) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def package_members(archive: zipfile.ZipFile) -> tuple[str, list[zipfile.ZipInfo]]:
    """The prefix under which ``mpstore/`` sits in the archive, and its safe members."""
    names = archive.namelist()
    inits = sorted((n for n in names if n.endswith(f"{PACKAGE}/__init__.py")), key=lambda n: n.count("/"))
    if not inits:
        raise SystemExit("this archive holds no mpstore package (no mpstore/__init__.py)")
    prefix = inits[0][: -len("__init__.py")]
    members = []
    for info in archive.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        rel = info.filename[len(prefix) :]
        parts = rel.split("/")
        if rel.startswith("/") or ".." in parts or "\\" in rel or ":" in rel:
            raise SystemExit(f"refusing an archive with an unsafe path: {info.filename!r}")
        if "__pycache__" in parts:
            continue
        members.append(info)
    return prefix, members


def install(archive_path: str, target: str) -> str:
    """Copy the mpstore package from ``archive_path`` into ``target``; return where it went."""
    with zipfile.ZipFile(archive_path) as archive:
        prefix, members = package_members(archive)
        os.makedirs(target, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".mpstore-", dir=target)
        try:
            for info in members:
                dest = os.path.join(staging, *info.filename[len(prefix) :].split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with archive.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
            final = os.path.join(target, PACKAGE)
            old = final + ".old"
            shutil.rmtree(old, ignore_errors=True)
            if os.path.exists(final):
                os.rename(final, old)
            os.rename(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


def check(target: str) -> str:
    """Import the installed copy afresh; return a one-line report."""
    if target not in sys.path:
        sys.path.insert(0, target)
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]  # Pythonista keeps modules between runs: drop an older copy
    importlib.invalidate_caches()
    mpstore = importlib.import_module(PACKAGE)
    engine = importlib.import_module(PACKAGE + ".engines").load_engine(None)
    where = os.path.dirname(mpstore.__file__)
    return f"mpstore {mpstore.__version__} from {where}; CRDT engine: {engine.name}"


def main(argv: list[str] | None = None) -> int:
    """Install from a URL or a local archive; print what was installed."""
    parser = argparse.ArgumentParser(prog="pythonista_install", description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=URL, help="https URL or path of a wheel/zip")
    parser.add_argument("--sha256", default="", help="the archive's expected SHA-256 (hex)")
    parser.add_argument("--target", default=default_target(), help="folder to install into")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        source = args.source
        if source.startswith(("https://", "http://")):
            print(f"downloading {source}")
            path = download(source, scratch)
        elif source:
            path = source
        else:
            found = find_local()
            if found is None:
                print(
                    "no mpstore wheel found: share mpstore-*.whl to Pythonista (it lands in "
                    "Documents/Inbox), or give the release URL as the argument"
                )
                return 1
            path = found
        if not os.path.isfile(path):
            print(f"{path}: no such file")
            return 1
        digest = sha256(path)
        if args.sha256 and digest != args.sha256.lower():
            print(f"{path}: SHA-256 {digest} is not the expected {args.sha256}; nothing installed")
            return 1
        try:
            where = install(path, args.target)
        except zipfile.BadZipFile:
            print(f"{path} is not a wheel or zip file; nothing installed")
            return 1
    print(f"installed {os.path.basename(path)} (SHA-256 {digest[:16]}...) into {where}")
    print(check(args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
