"""Child of ``bench/fuzz_hostile.py --forged-dirs``: forged index directories, one process.

    python bench/forged_index_dirs.py WORK COUNT SEED

Builds one small index of two documents, then COUNT times copies it and forges the
copy as someone who can write the index directory would: a random manifest (sources
and roots pointed at a private folder, wrong types, checksums fixed up), random
symbolic links (to the private folder, to an outside folder, to /dev/zero, to
themselves) and FIFOs in place of qa's files, and random permissions. On each it
runs ``qa ask``, ``qa chat``, ``qa sources`` and ``qa index`` (no paths) in this
process with the tests' fake model. An audit hook (``sys.addaudithook``) records
every path opened, listed, created, renamed, removed or chmodded; the private and
outside folders must never appear, and their files must keep their bytes. A
command may fail with qa's one-line error, never a traceback, and each forged
directory must be done within 20 s (SIGALRM).

Prints one JSON object: cases, outcomes, failures (each with its seed and reason).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

WATCHED_EVENTS = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.remove", "os.rename", "os.replace",
                  "os.rmdir", "os.chmod", "os.symlink", "os.truncate", "shutil.rmtree", "shutil.copyfile",
                  "os.link", "os.utime", "os.chown"}


class Hang(Exception):
    pass


def main() -> None:
    work, count, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    os.environ["QA_STATE_DIR"] = str(work / "state")
    os.environ["QA_CACHE_DIR"] = str(REPO / ".cache")
    from conftest import FAKE_MODEL, FakeEmbedder
    from typer.testing import CliRunner

    from qa.cli import app
    from qa.embedder import register_embedder

    register_embedder(FAKE_MODEL, FakeEmbedder)
    docs, private, outside = work / "docs", work / "private", work / "outside"
    for folder in (docs, private / ".ssh", outside):
        folder.mkdir(parents=True, exist_ok=True)
    (docs / "drones.txt").write_text("Drones\n\nRussia imported Shahed drones from Iran in the spring.\n")
    (docs / "tea.txt").write_text("Tea\n\nTea grows on the hills of Java and Sumatra.\n")
    secret = private / ".ssh" / "id_ed25519"
    secret.write_text("PRIVATE KEY never to be read\n")
    secret.chmod(0o600)
    (outside / "batch-0000.npz").write_bytes(b"someone else's batch")
    (outside / "notes.txt").write_text("outside notes, never to be touched\n")
    guarded = {path: path.read_bytes() for path in (secret, outside / "batch-0000.npz", outside / "notes.txt")}
    template = work / "template"
    runner = CliRunner()
    built = runner.invoke(app, ["index", "--index-dir", str(template), "--model", FAKE_MODEL, str(docs)])
    assert built.exit_code == 0, built.output

    forbidden = (str(private), str(outside))
    touched: list[str] = []

    def reaches(path: str, follows: bool) -> bool:
        """Whether an operation on ``path`` reaches the guarded folders: through its
        folders always, through its last part only when the operation follows links."""
        head, tail = os.path.split(os.path.abspath(path))
        real = os.path.realpath(path) if follows else os.path.join(os.path.realpath(head), tail)
        return real.startswith(forbidden)

    def hook(event: str, args: tuple) -> None:
        if event not in WATCHED_EVENTS or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        path = os.fsdecode(args[0])
        if event == "open":
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            follows = not flags & os.O_NOFOLLOW
        else:  # remove, rename, rmtree, listdir...: on the entry itself; listdir/scandir follow
            follows = event in ("os.listdir", "os.scandir", "os.chmod", "os.utime", "os.truncate")
        if reaches(path, follows):
            touched.append(f"{event} {path}")
        if event in ("os.rename", "os.replace", "os.symlink", "os.link") and len(args) > 1 \
                and isinstance(args[1], (str, bytes, os.PathLike)) and reaches(os.fsdecode(args[1]), False):
            touched.append(f"{event} -> {os.fsdecode(args[1])}")

    def alarm(*_):
        raise Hang()

    signal.signal(signal.SIGALRM, alarm)
    sys.addaudithook(hook)
    outcomes: dict[str, int] = {}
    failures = []
    for case in range(count):
        rng = random.Random(seed * 1_000_003 + case)
        index_dir = work / f"forged-{case}"
        shutil.copytree(template, index_dir, symlinks=True)
        forge(index_dir, rng, secret, private, outside)
        touched.clear()
        signal.alarm(20)
        try:
            for args in (["ask", "--index-dir", str(index_dir), "private key"],
                         ["chat", "--index-dir", str(index_dir)],
                         ["sources", "--index-dir", str(index_dir)],
                         ["index", "--index-dir", str(index_dir)]):
                result = runner.invoke(app, args, input="private key\nShahed drones\n")
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    failures.append({"case": case, "seed": seed, "command": args[0],
                                     "traceback": f"{type(result.exception).__name__}: {result.exception}"[:300]})
                    outcome = "traceback"
                else:
                    outcome = f"{args[0]} exit {result.exit_code}"
                if "PRIVATE" in result.output:
                    failures.append({"case": case, "seed": seed, "command": args[0], "leak": "printed the secret"})
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        except Hang:
            failures.append({"case": case, "seed": seed, "hang": "over 20 s"})
        finally:
            signal.alarm(0)
        if touched:
            failures.append({"case": case, "seed": seed, "outside": sorted(set(touched))[:5]})
        for path, data in guarded.items():
            if not path.exists() or path.read_bytes() != data:
                failures.append({"case": case, "seed": seed, "changed": str(path)})
                path.write_bytes(data)
        for gen in index_dir.glob("gen-*/passages.jsonl"):
            try:
                if not gen.is_symlink() and gen.is_file() and b"PRIVATE" in gen.read_bytes():
                    failures.append({"case": case, "seed": seed, "leak": f"secret copied into {gen}"})
            except OSError:
                pass
        _remove(index_dir)
    print(json.dumps({"cases": count, "outcomes": outcomes, "failures": failures[:20], "n_failures": len(failures)}))


def forge(index_dir: Path, rng: random.Random, secret: Path, private: Path, outside: Path) -> None:
    """Forge a copy of an index: manifest, links, FIFOs, permissions, in random measure."""
    current = (index_dir / "CURRENT").read_text().split()[0]
    gen = index_dir / current
    if rng.random() < 0.7:
        manifest = json.loads((gen / "manifest.json").read_bytes())
        for _ in range(rng.randint(1, 4)):
            mutate(manifest, rng, secret, private)
        data = json.dumps(manifest).encode()
        (gen / "manifest.json").write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        (gen / "manifest.sha256").write_text(f"{sha}\n")
        (index_dir / "CURRENT").write_text(f"{current} {sha}\n")
    names = ["CURRENT", ".lock", ".journal-0123456789abcdef0123", f".tmp-probe-{os.getpid()}", current,
             *(f"{current}/{p.name}" for p in gen.iterdir())]
    targets = [str(secret), str(private), str(outside), str(outside / "batch-0000.npz"), "/dev/zero", None]
    for _ in range(rng.randint(0, 3)):
        name = rng.choice(names)
        path = index_dir / name
        kind = rng.choice(["link", "link", "fifo", "chmod"])
        if kind == "chmod":
            if path.exists() and not path.is_symlink():
                path.chmod(rng.choice([0, 0o400, 0o500, 0o644, 0o777]))
            continue
        try:
            _remove(path)
            if kind == "fifo":
                os.mkfifo(path)
            else:
                target = rng.choice(targets)
                os.symlink(target if target is not None else path.name, path)  # None: a link to itself
        except OSError:  # its folder was itself replaced by a link or a FIFO just before
            pass


def mutate(manifest: dict, rng: random.Random, secret: Path, private: Path) -> None:
    documents = manifest.get("documents") if isinstance(manifest.get("documents"), list) else []
    odd = rng.choice([None, 5, "x", [], {}, -1, 2**70, 1.5, True, [str(secret)]])
    choice = rng.randrange(7)
    if choice == 0 and documents and isinstance(documents[0], dict):
        doc = rng.choice(documents)
        doc["source"] = str(secret)
        doc["sha256"] = rng.choice(["0" * 64, doc.get("sha256")])
        doc["size"] = rng.choice([None, 0, doc.get("size")])
    elif choice == 1:
        manifest["roots"] = rng.choice([[str(private)], [str(private / ".ssh")], [str(private / "**")], odd])
    elif choice == 2:
        manifest["excluded"] = odd
    elif choice == 3 and documents and isinstance(documents[0], dict):
        documents[0][rng.choice(["source", "size", "mtime_ns", "sha256", "passages"])] = odd
    elif choice == 4:
        manifest[rng.choice(["model", "chunking", "passed_over", "files", "vectors", "dim"])] = odd
    elif choice == 5:
        manifest["documents"] = rng.choice([odd, documents + [{"source": str(secret)}]])
    else:
        manifest["passed_over"] = [{"key": str(secret), "size": 1, "mtime_ns": 1}]


def _remove(path: Path) -> None:
    for root, dirs, _files in os.walk(path):  # a chmod 0 folder can't be emptied
        for name in dirs:
            try:
                os.chmod(os.path.join(root, name), 0o700)
            except OSError:
                pass
    if path.is_symlink() or path.is_file() or (path.exists() and not path.is_dir()):
        path.unlink(missing_ok=True)
    elif path.is_dir():
        try:
            path.chmod(0o700)
        except OSError:
            pass
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
