"""Compiled engines on disk, keyed by everything that decides what they compute.

An entry is a directory ``<root>/<digest>/`` holding the engine's files and a
``meta.json`` with the full key and a SHA-256 of each file. The digest covers
the model, the weights file's hash, the source of the model code, the backend
and its version, the precision, the part and its input shapes, and the device
(CPU model and the instruction sets engines pick kernels by, or the GPU name and
compute capability). So another weights file, an upgraded OpenVINO or a copied
cache from another machine is simply another key, never served by mistake; and
an entry whose key or files do not match its meta (a truncated write, a copied
directory) is detected, logged in one line, and rebuilt.

Entries are built in a temporary directory and renamed into place, so a killed
build leaves nothing half-written under a valid name.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

FORMAT = 1  # bump when the entry layout changes
ENGINE_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_bf16", "amx_int8")
_SOURCE_DIRS = ("models", "layers", "ops")


def default_cache_dir() -> Path:
    """``$IRSTD_CACHE_DIR``, else ``$XDG_CACHE_HOME/irstd_ros/engines``, else ``~/.cache/irstd_ros/engines``."""
    if os.environ.get("IRSTD_CACHE_DIR"):
        return Path(os.environ["IRSTD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "irstd_ros" / "engines"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=32)
def _weights_digest(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def weights_digest(path: str | Path) -> str:
    """SHA-256 of a checkpoint, computed once per file version in this process."""
    st = os.stat(path)
    return _weights_digest(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 over the package's model, layer and op sources: a code change that alters a graph is a new key."""
    root = Path(__file__).resolve().parents[2]  # the irstd_ros package
    h = hashlib.sha256()
    for sub in _SOURCE_DIRS:
        for path in sorted((root / sub).rglob("*")):
            if path.suffix in (".py", ".cpp", ".cu") and path.is_file():
                h.update(str(path.relative_to(root)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


def device_signature(device: str = "cpu") -> str:
    """What an engine compiled on this device depends on: the CPU model and the ISA extensions engines choose
    kernels by, or the GPU's name and compute capability."""
    if device.startswith("cuda"):
        import torch
        dev = torch.device(device)
        major, minor = torch.cuda.get_device_capability(dev)
        return f"{torch.cuda.get_device_name(dev)} sm_{major}{minor}"
    from ..precision import cpu_flags
    model = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    return f"{model} [{' '.join(f for f in ENGINE_FLAGS if f in flags)}]"


@dataclass(frozen=True)
class EntryKey:
    """Everything a compiled engine depends on; :attr:`digest` names its directory."""

    model: str
    weights_sha256: str
    part: str
    backend: str
    backend_version: str
    precision: str
    input_shapes: Tuple[Tuple[int, ...], ...]
    device: str
    source: str = field(default_factory=source_digest)
    format: int = FORMAT

    def as_dict(self) -> Dict[str, Any]:
        d = dict(self.__dict__)
        d["input_shapes"] = [list(s) for s in self.input_shapes]
        return d

    @property
    def digest(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return f"{self.model}-{self.part}-{self.backend}-{self.precision}-{hashlib.sha256(blob).hexdigest()[:20]}"


def _read_meta(entry: Path) -> Optional[Dict[str, Any]]:
    """An entry's meta.json, or None when it is missing or not JSON."""
    try:
        return json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return None


@dataclass
class Lookup:
    """What :meth:`EngineCache.get` did: ``hit`` (loaded), ``built`` (new) or ``rebuilt`` (bad entry replaced)."""

    status: str
    seconds: float
    path: Path
    reason: str = ""


class EngineCache:
    """A directory of compiled engines; see the module docstring."""

    def __init__(self, root: Optional[str | Path] = None):
        self.root = Path(root) if root else default_cache_dir()

    def entry(self, key: EntryKey) -> Path:
        return self.root / key.digest

    def problem(self, key: EntryKey) -> Optional[str]:
        """Why the entry for ``key`` cannot be used as it is, else None (it exists and matches)."""
        path = self.entry(key)
        if not path.is_dir():
            return "missing"
        meta = _read_meta(path)
        if meta is None:
            return "its meta.json is missing or unreadable"
        ours = key.as_dict()
        if meta.get("key") != ours:
            theirs = meta.get("key") or {}
            diff = sorted(k for k in ours if theirs.get(k) != ours[k])
            return f"it was built for another {', '.join(diff) or 'key'}"
        for name, digest in (meta.get("files") or {}).items():
            f = path / name
            if not f.is_file():
                return f"its file {name} is missing"
            if file_sha256(f) != digest:
                return f"its file {name} does not match its recorded hash (truncated or modified)"
        if not meta.get("files"):
            return "it lists no files"
        return None

    def get(self, key: EntryKey, build: Callable[[Path], List[str]], load: Callable[[Path], Any],
            note: Optional[Dict[str, Any]] = None) -> Tuple[Any, Lookup]:
        """Load the engine for ``key``; build it first if the entry is missing, stale or corrupt.

        ``build(dir)`` writes the engine's files into ``dir`` and returns their names;
        ``load(dir)`` returns the runnable engine. A valid entry that fails to load is
        treated as corrupt: rebuilt once, and an error the second time is raised.
        ``note`` is stored in a new entry's meta.json (e.g. the frame size it serves).
        """
        t0 = time.perf_counter()
        path = self.entry(key)
        problem = self.problem(key)
        if problem is None:
            try:
                engine = load(path)
                return engine, Lookup("hit", time.perf_counter() - t0, path)
            except Exception as exc:  # noqa: BLE001  a corrupt engine fails in the engine's own way
                problem = f"it failed to load ({exc.__class__.__name__}: {str(exc).strip().splitlines()[0][:160]})"
        status = "built" if problem == "missing" else "rebuilt"
        self._build(key, build, note or {})
        engine = load(path)
        return engine, Lookup(status, time.perf_counter() - t0, path, "" if status == "built" else problem)

    def _build(self, key: EntryKey, build: Callable[[Path], List[str]], note: Dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key.digest}.", dir=self.root))
        try:
            t0 = time.perf_counter()
            files = build(tmp)
            meta = {"key": key.as_dict(), "files": {name: file_sha256(tmp / name) for name in files},
                    "build_seconds": round(time.perf_counter() - t0, 3),
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **note}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            final = self.entry(key)
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.replace(tmp, final)
            except OSError:  # another process put a fresh entry there first: theirs is as good as ours
                if self.problem(key) is not None:
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def notes(self, **match: Any) -> List[Dict[str, Any]]:
        """The meta.json of every entry whose key has these field values, newest first (not verified: a bad
        entry is found, and rebuilt, when it is loaded)."""
        found = []
        for path in self.entries():
            meta = _read_meta(path)
            if meta is not None and all(meta.get("key", {}).get(k) == v for k, v in match.items()):
                found.append((path.stat().st_mtime, meta))
        return [meta for _, meta in sorted(found, key=lambda t: -t[0])]

    def entries(self) -> List[Path]:
        return sorted(p for p in self.root.glob("*") if p.is_dir() and not p.name.startswith("."))

    def check(self) -> List[Tuple[Path, Optional[str]]]:
        """(entry, problem or None) for every entry, each checked against its own recorded key."""
        out = []
        for path in self.entries():
            meta = _read_meta(path)
            try:
                k = dict(meta["key"])
                k["input_shapes"] = tuple(tuple(s) for s in k["input_shapes"])
                key = EntryKey(**k)
            except (KeyError, TypeError, ValueError):
                out.append((path, "its meta.json is missing or unreadable"))
                continue
            if key.digest != path.name:
                out.append((path, "its directory name does not match its key"))
                continue
            problem = self.problem(key)
            if problem is None and key.source != source_digest():
                problem = "it was built from other model code (an older irstd_ros)"
            out.append((path, problem))
        return out
