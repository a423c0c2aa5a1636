"""Sweeps and regime-of-validity maps: where in parameter space does a claim hold?

A *unit* is one check of one claim: ``(claim id, claim version, parameters, seed index, backend)``.
Its *key* is the SHA-256 of the canonical JSON of that tuple (sorted keys, no spaces, floats written
by ``repr``, so the same unit always has the same key). The random seed handed to the claim's
``measured`` is derived from the key through ``numpy.random.SeedSequence``: a unit's numbers do not
depend on which worker ran it, in what order, or on which executor.

Results go to a :class:`Store`, an SQLite file with one row per unit, written by the driver (never
by a worker) in one transaction per batch of finished units. A rerun computes only the keys that
are missing. An interrupted sweep (Ctrl-C, a killed worker, a killed driver) loses at most the units
in flight: a row is either committed whole or absent, and the key is the primary key, so no unit is
stored twice.

Executors: :class:`InlineExecutor` (in the calling process; ``workers=0``), :class:`LocalExecutor`
(``concurrent.futures`` worker processes, started by ``spawn`` with one BLAS/OpenMP thread each so
that N workers use N cores) and :class:`RayExecutor` (``ray`` core tasks, on a local instance or a
cluster given by ``address``).

Maps (:func:`regime_map`) refine a quadtree (a binary interval tree in 1-D) on a dyadic lattice:
every cell whose corners (or the evaluated points on its edges) disagree, pass against fail, is
split in four, coarsest cells first, until the budget of evaluations is spent. Why a quadtree and
not python-adaptive's ``Learner2D`` with a boundary loss:

- the verdict is a step function (pass/fail); Learner2D's losses are built for interpolating a
  continuous function over a triangulation, and would need a custom loss to stop spending points
  inside the regions;
- lattice points are reproducible: a point of the lattice has the same float coordinates, so the
  same key, in every run, and a map rerun with a larger budget reuses every stored evaluation.
  Learner2D's points depend on the order in which results come back, which parallel executors do
  not fix, so its keys would not repeat;
- one refinement level is one batch of independent units, the shape executors want;
- cost: after level ``L`` the number of evaluations is about ``c * length / h`` with ``h = 2^-L``
  the cell size (only cells the boundary crosses are split), against ``1/h^2`` for a uniform grid
  of the same resolution; the tests measure it on disks of two radii.

Its limit: a region smaller than the initial cells whose boundary crosses no evaluated lattice
point is not seen (raise ``initial``).

After level ``L`` each boundary point is the midpoint of a cell edge whose end points disagree,
so the verdict flips within half an edge of it: ``|x - x*| <= dx`` along that edge, ``dx`` reported
with every point (``(hi - lo) / 2^(L+1)`` on a linear axis, a factor ``(hi/lo)^(1/2^(L+1))`` on a log
axis).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import math
import os
import signal
import sqlite3
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

__all__ = [
    "SweepError",
    "StoreError",
    "ExecutorError",
    "SweepInterrupted",
    "claim_version",
    "unit_key",
    "seed_from_key",
    "Unit",
    "Store",
    "InlineExecutor",
    "LocalExecutor",
    "RayExecutor",
    "make_executor",
    "run_units",
    "GridSpec",
    "Axis",
    "parse_grid",
    "parse_axis",
    "sweep",
    "SweepResult",
    "regime_map",
    "RegimeMap",
    "falsify_beyond",
    "BeyondResult",
    "export",
    "DEFAULT_STORE",
]

DEFAULT_STORE = "solvable-sweeps.sqlite"
STORE_FORMAT = "solvable-sweep-store"
STORE_SCHEMA = 1
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS")


class SweepError(ValueError):
    """A problem with what was asked (a grid, an axis, a store, an executor): one line, exit 2."""


class StoreError(SweepError):
    """The store cannot be used (not a solvable store, a newer schema, a directory)."""


class ExecutorError(SweepError):
    """The executor cannot be started (ray missing, a Ray address that does not answer)."""


class SweepInterrupted(Exception):
    """Ctrl-C during a sweep: what was finished is stored; rerunning the same command resumes."""

    def __init__(self, stored: int, missing: int):
        super().__init__(f"interrupted: {stored} units stored, {missing} not computed; "
                         "rerun the same command to compute only the missing ones")
        self.stored, self.missing = stored, missing


# --------------------------------------------------------------------------------------------
# Versions, keys and seeds


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True)


def _plain(x: Any) -> Any:
    """A JSON-able copy (tuples as lists, numpy scalars as Python numbers)."""
    if isinstance(x, (bool, str)) or x is None:
        return x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x)
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return repr(x)


_VERSIONS: dict[int, tuple[Any, str]] = {}


def claim_version(claim: Any) -> str:
    """A short hash of what the claim asserts: its id, statement, reference and parameter fields
    (names, defaults, ranges, domains).

    Rewording the statement, changing a default or a range gives a new version, so stored results
    of the old claim are not mixed with new ones. A change to the simulator alone does not: say it
    in the statement or the reference (where a changed method belongs anyway).
    """
    hit = _VERSIONS.get(id(claim))
    if hit is not None and hit[0] is claim:
        return hit[1]
    fields = {}
    for name, meta in claim.params.fields().items():
        fields[name] = {k: _plain(v) for k, v in meta.items()}
    text = _canonical({"id": claim.id, "statement": claim.statement, "reference": claim.reference,
                       "params": fields, "bound": claim.bound})
    version = hashlib.sha256(text.encode()).hexdigest()[:16]
    _VERSIONS[id(claim)] = (claim, version)  # claims are frozen: the version of an object never changes
    return version


def canonical_params(claim: Any, params: Any) -> dict[str, Any]:
    """All parameters of ``params`` (defaults filled in) in key form: floats as floats, integers as
    integers, so that ``eta=1`` and ``eta=1.0`` are the same unit."""
    fields = claim.params.fields()
    out = {}
    for name, value in params.asdict().items():
        m = fields.get(name, {})
        if m and m.get("choices") is None and not m.get("integer") and isinstance(value, (int, np.integer)) \
                and not isinstance(value, bool):
            value = float(value)
        out[name] = _plain(value)
    return out


def unit_key(claim_id: str, version: str, params: Mapping[str, Any], replicate: int,
             backend: Mapping[str, str]) -> str:
    """SHA-256 (hex) of the canonical JSON of the unit."""
    text = _canonical({"claim": claim_id, "version": version, "params": _plain(dict(params)),
                       "seed": int(replicate), "backend": _plain(dict(backend))})
    return hashlib.sha256(text.encode()).hexdigest()


def seed_from_key(key: str) -> int:
    """The simulation seed of a unit: ``SeedSequence(int(key, 16))``, one 31-bit word (in
    ``[0, 2^31)``, a seed every simulator accepts, also after adding small offsets)."""
    word = np.random.SeedSequence(int(key, 16)).generate_state(1, dtype=np.uint32)[0]
    return int(word) >> 1


@dataclass(frozen=True)
class Unit:
    """One check to run: the claim, its parameters (validated), which seed replicate, which backend."""

    claim: Any
    params: Any
    replicate: int = 0
    backend: str = "numpy"
    device: str = "cpu"
    dtype: str = "float64"
    overrides: tuple = ()  # (name, value) pairs passed to the Params constructor in the worker

    @cached_property
    def key_params(self) -> dict[str, Any]:
        return canonical_params(self.claim, self.params)

    @cached_property
    def version(self) -> str:
        return claim_version(self.claim)

    @cached_property
    def key(self) -> str:
        return unit_key(self.claim.id, self.version, self.key_params, self.replicate,
                        {"name": self.backend, "device": self.device, "dtype": self.dtype})

    @cached_property
    def seed(self) -> int:
        return seed_from_key(self.key)

    def task(self) -> dict[str, Any]:
        """What a worker needs (plain data: no claim object crosses a process boundary)."""
        return {"key": self.key, "claim": self.claim.id, "module": _claim_module(self.claim),
                "params": dict(self.overrides), "seed": self.seed, "backend": self.backend,
                "device": self.device, "dtype": self.dtype}


def _claim_module(claim: Any) -> str:
    return getattr(claim.measured, "__module__", None) or ""


def make_units(claim: Any, points: Iterable[Mapping[str, Any]], *, seeds: int = 1, backend: str = "numpy",
               device: str = "cpu", dtype: str | None = None) -> list[Unit]:
    """Units for every point (dict of parameter overrides) and seed replicate ``0..seeds-1``.

    Raises ``ValueError`` (from the claim's parameters) on an invalid point.
    """
    be = claim.resolve_backend(backend, device, dtype)
    out = []
    for point in points:
        p = claim.params(**dict(point))
        over = tuple(sorted((k, _plain(v)) for k, v in dict(point).items()))
        for r in range(seeds):
            out.append(Unit(claim, p, r, be.name, be.device, be.dtype, over))
    return out


# --------------------------------------------------------------------------------------------
# The store


_SCHEMA_SQL = """
CREATE TABLE solvable_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE units (
    key TEXT PRIMARY KEY,
    claim_id TEXT NOT NULL,
    claim_version TEXT NOT NULL,
    params TEXT NOT NULL,
    replicate INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    backend TEXT NOT NULL,
    device TEXT NOT NULL,
    dtype TEXT NOT NULL,
    passed INTEGER NOT NULL,
    margin REAL,
    diverged INTEGER NOT NULL,
    predicted TEXT,
    measured TEXT,
    error TEXT,
    tolerance TEXT,
    seconds REAL,
    verdict TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX units_claim ON units (claim_id, claim_version);
"""

_COLUMNS = ("key", "claim_id", "claim_version", "params", "replicate", "seed", "backend", "device", "dtype",
            "passed", "margin", "diverged", "predicted", "measured", "error", "tolerance", "seconds", "verdict",
            "created")


_INSERT = f"INSERT OR IGNORE INTO units ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


class Store:
    """An SQLite file of unit results, one row per key (``":memory:"`` for a throw-away store).

    The driver writes; workers never touch it. ``put`` inserts a batch in one transaction and skips
    keys already present (``INSERT OR IGNORE`` on the primary key), so a unit is never stored twice,
    even by two drivers sharing a file.

    >>> with Store(":memory:") as s:
    ...     len(s)
    0
    """

    def __init__(self, path: str | os.PathLike = DEFAULT_STORE, create: bool = True):
        self.path = str(path)
        memory = self.path == ":memory:"
        if not memory:
            p = Path(self.path)
            if p.is_dir():
                raise StoreError(f"store {self.path}: is a directory, not a solvable store")
            fresh = not p.exists() or p.stat().st_size == 0
            if fresh and not create:
                raise StoreError(f"store {self.path}: no such file")
            if fresh and not p.parent.exists():
                raise StoreError(f"store {self.path}: folder {p.parent} does not exist")
        else:
            fresh = True
        try:
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            raise StoreError(f"store {self.path}: not a solvable store (not an SQLite database: {e})") from None
        if not tables and fresh:
            self._create()
        elif "solvable_meta" not in tables or "units" not in tables:
            self.conn.close()
            raise StoreError(f"store {self.path}: not a solvable store (an SQLite database without "
                             f"solvable's tables; it has {', '.join(sorted(tables)) or 'none'})")
        else:
            meta = dict(self.conn.execute("SELECT name, value FROM solvable_meta"))
            if meta.get("format") != STORE_FORMAT:
                self.conn.close()
                raise StoreError(f"store {self.path}: not a solvable store (format {meta.get('format')!r})")
            if int(meta.get("schema", 0)) > STORE_SCHEMA:
                self.conn.close()
                raise StoreError(f"store {self.path}: schema {meta['schema']} is newer than this solvable "
                                 f"reads ({STORE_SCHEMA}); upgrade solvable")
        if not memory:
            # WAL: readers (a notebook plotting a running sweep) never block the writing driver, and
            # a killed driver leaves every committed transaction intact
            with contextlib.suppress(sqlite3.DatabaseError):
                self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")

    def _create(self) -> None:
        from .. import __version__

        self.conn.execute("BEGIN")
        for stmt in _SCHEMA_SQL.strip().split(";"):
            if stmt.strip():
                self.conn.execute(stmt)
        self.conn.executemany("INSERT INTO solvable_meta VALUES (?, ?)",
                              [("format", STORE_FORMAT), ("schema", str(STORE_SCHEMA)),
                               ("created_by", f"solvable {__version__}")])
        self.conn.execute("COMMIT")

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM units").fetchone()[0])

    def keys(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT key FROM units")}

    def get(self, keys: Iterable[str]) -> dict[str, dict]:
        """The stored records of those keys that are present (``{key: record}``)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = f"SELECT {', '.join(_COLUMNS)} FROM units WHERE key IN ({', '.join('?' * len(chunk))})"
            for row in self.conn.execute(q, chunk):
                rec = _row_record(row)
                out[rec["key"]] = rec
        return out

    def put(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Insert records in one transaction (keys already present are skipped); returns how many
        were new. Ctrl-C during the commit is held until the transaction is closed."""
        if not records:
            return 0
        rows = [tuple(_column_value(c, r[c]) for c in _COLUMNS) for r in records]
        with _sigint_deferred():
            before = self.conn.total_changes
            if len(rows) == 1:  # one statement is one transaction (autocommit)
                self.conn.execute(_INSERT, rows[0])
                return self.conn.total_changes - before
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany(_INSERT, rows)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            return self.conn.total_changes - before

    def records(self, claim_id: str | None = None) -> list[dict]:
        """Every stored record (of one claim, if given), in insertion order."""
        q = f"SELECT {', '.join(_COLUMNS)} FROM units"
        args: tuple = ()
        if claim_id is not None:
            q += " WHERE claim_id = ?"
            args = (claim_id,)
        return [_row_record(r) for r in self.conn.execute(q + " ORDER BY rowid", args)]


def _column_value(col: str, v: Any) -> Any:
    if col in ("params", "predicted", "measured", "error", "tolerance", "verdict"):
        return json.dumps(v, sort_keys=True, allow_nan=False)
    if col in ("passed", "diverged"):
        return int(bool(v))
    if col == "margin":
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
    return v


def _row_record(row: Sequence[Any]) -> dict:
    rec = dict(zip(_COLUMNS, row))
    for c in ("params", "predicted", "measured", "error", "tolerance", "verdict"):
        rec[c] = json.loads(rec[c]) if rec[c] is not None else None
    rec["passed"] = bool(rec["passed"])
    rec["diverged"] = bool(rec["diverged"])
    return rec


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C while a transaction is open (main thread only), then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list = []
    try:
        old = signal.signal(signal.SIGINT, lambda *a: got.append(a))
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got:
            raise KeyboardInterrupt


def _as_float(x: Any) -> float:
    if x is None:
        return math.nan
    if isinstance(x, str):
        return float(x)
    return float(x)


def _record(unit: Unit, verdict: Mapping[str, Any]) -> dict[str, Any]:
    """A store row from a unit and its verdict JSON."""
    # the statement and reference belong to the claim's version, not to each row
    v = {k: val for k, val in verdict.items() if k not in ("statement", "reference")}
    v.setdefault("info", {})
    return {
        "key": unit.key, "claim_id": unit.claim.id, "claim_version": unit.version,
        "params": unit.key_params, "replicate": unit.replicate, "seed": unit.seed,
        "backend": unit.backend, "device": unit.device, "dtype": unit.dtype,
        "passed": bool(v.get("passed")), "margin": _as_float(v.get("margin")),
        "diverged": bool(v.get("diverged")), "predicted": v.get("predicted"), "measured": v.get("measured"),
        "error": v.get("error"), "tolerance": v.get("tolerance"), "seconds": v.get("seconds"),
        "verdict": v, "created": time.time(),
    }


# --------------------------------------------------------------------------------------------
# Workers


def _resolve_claim(claim_id: str, module: str) -> Any:
    """The claim with this id in a worker: the registry, then the claim's own module (imported; a
    claim object found there counts even if it was never registered), then every model."""
    from .. import claims as _claims

    if claim_id in _claims._REGISTRY:
        return _claims._REGISTRY[claim_id]
    if module and module not in ("__main__", "__mp_main__"):
        mod = importlib.import_module(module)
        if claim_id in _claims._REGISTRY:
            return _claims._REGISTRY[claim_id]
        for value in vars(mod).values():
            if isinstance(value, _claims.Claim) and value.id == claim_id:
                return value
    import solvable

    solvable.load_models()
    return _claims.get(claim_id)


def _failed_verdict(claim: Any, params: Any, task: Mapping[str, Any], exc: BaseException, seconds: float) -> dict:
    import traceback

    return {
        "id": claim.id, "statement": claim.statement, "reference": claim.reference,
        "params": _plain(params.asdict()), "predicted": None, "measured": None, "error": None,
        "tolerance": None, "passed": False, "backend": task["backend"], "device": task["device"],
        "seconds": round(seconds, 4), "tolerance_reason": "the check raised an exception", "stderr": None,
        "diverged": False, "diverged_step": None, "checks": {}, "margin": None, "mutants": {},
        "info": {"exception": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=4)},
    }


def _run_unit(task: Mapping[str, Any]) -> dict[str, Any]:
    """Check one unit (in a worker process, a Ray task, or inline). A check that raises is a failed
    unit with the exception in ``info`` (a result, stored like any other), never a lost one."""
    claim = _resolve_claim(task["claim"], task["module"])
    params = claim.params(**task["params"])
    t0 = time.perf_counter()
    try:
        verdict = claim.check(params, backend=task["backend"], device=task["device"], dtype=task["dtype"],
                              seed=task["seed"]).to_json()
    except Exception as e:  # noqa: BLE001 - a crashing check is a failed unit
        verdict = _failed_verdict(claim, params, task, e, time.perf_counter() - t0)
    if _IN_WORKER and "torch" in sys.modules:
        # torch reads OMP_NUM_THREADS (set to 1 for workers) when it loads; this covers a torch
        # loaded before the variable was set. Not imported here: it costs seconds per worker.
        torch = sys.modules["torch"]
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)
    return {"key": task["key"], "verdict": verdict}


_IN_WORKER = False


def _worker_init(parent_pid: int) -> None:
    """Local worker set-up: Ctrl-C is the driver's to handle; exit when the driver dies."""
    global _IN_WORKER
    _IN_WORKER = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        # a driver killed with SIGKILL cannot stop its workers: they notice the new parent and leave
        while True:
            time.sleep(0.25)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


@contextlib.contextmanager
def _single_threaded_env() -> Iterator[None]:
    """One BLAS/OpenMP thread in the worker processes started inside this block (they inherit the
    environment at start; numpy reads it when it loads)."""
    old = {v: os.environ.get(v) for v in _THREAD_VARS}
    os.environ.update({v: "1" for v in _THREAD_VARS})
    try:
        yield
    finally:
        for v, val in old.items():
            if val is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = val


# --------------------------------------------------------------------------------------------
# Executors: run tasks, yield batches of results as they finish


class InlineExecutor:
    """Run units one after another in this process (``workers=0``; notebooks, tests, debugging)."""

    name = "inline"
    workers = 0

    def __enter__(self) -> "InlineExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def run(self, tasks: Sequence[Mapping[str, Any]]) -> Iterator[list[dict]]:
        for t in tasks:
            yield [_run_unit(t)]


class LocalExecutor:
    """Worker processes on this machine (``concurrent.futures.ProcessPoolExecutor``, ``spawn``),
    one BLAS/OpenMP/torch thread each. At most ``2 * workers`` units are in flight, so an
    interruption loses few. A worker that dies (killed, out of memory) breaks the pool: the driver
    keeps what finished, starts a new pool and resubmits the units that were in flight (at most
    ``max_restarts`` times)."""

    name = "local"

    def __init__(self, workers: int | None = None, max_restarts: int = 3):
        self.workers = int(workers) if workers else _cpu_count()
        if self.workers < 1:
            raise ExecutorError(f"--workers {workers}: must be at least 1 for local processes (0 runs inline)")
        self.max_restarts = max_restarts
        self.max_in_flight = 2 * self.workers
        self.restarts = 0
        self._pool = None
        self._env = None

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _start(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self._env is None:
            self._env = _single_threaded_env()
            self._env.__enter__()
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_worker_init, initargs=(os.getpid(),))

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            with contextlib.suppress(Exception):
                p.kill()
        for p in procs:
            with contextlib.suppress(Exception):
                p.join(timeout=2)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._env is not None:
            self._env.__exit__(None, None, None)
            self._env = None

    def pids(self) -> list[int]:
        return [p.pid for p in getattr(self._pool, "_processes", {}).values()] if self._pool else []

    def run(self, tasks: Sequence[Mapping[str, Any]]) -> Iterator[list[dict]]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        todo = list(tasks)[::-1]
        pending: dict = {}
        window = max(1, self.max_in_flight)
        if self._pool is None:
            self._start()
        try:
            while todo or pending:
                while todo and len(pending) < window:
                    t = todo.pop()
                    pending[self._pool.submit(_run_unit, t)] = t
                done, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                batch, broken = [], []
                for f in done:
                    t = pending.pop(f)
                    try:
                        batch.append(f.result())
                    except BrokenProcessPool:
                        broken.append(t)
                if batch:
                    yield batch
                if broken:
                    # the pool is dead: every other pending future fails the same way
                    rest = list(pending.values())
                    pending.clear()
                    self.restarts += 1
                    if self.restarts > self.max_restarts:
                        raise ExecutorError(f"worker processes died {self.restarts} times; "
                                            f"{len(broken) + len(rest) + len(todo)} units not computed")
                    self._kill()
                    self._start()
                    todo.extend((broken + rest)[::-1])
        except KeyboardInterrupt:
            # hand over what finished before the interrupt, then stop; units in flight are lost
            salvage = [f.result() for f in pending if f.done() and not f.cancelled() and f.exception() is None]
            self._kill()
            if salvage:
                yield salvage
            raise
        except BaseException:
            self._kill()
            raise


class RayExecutor:
    """Ray core tasks, one CPU each, at most ``4 * CPUs`` in flight.

    Without ``address`` it uses the Ray instance already initialised in this process, or starts a
    local one (``workers`` CPUs). With ``address`` (``HOST:PORT`` of a cluster's head, or
    ``ray://HOST:PORT``) it first checks within ``connect_timeout`` seconds that the address
    answers, so a wrong address is a clear error, not a long hang. Every node needs solvable (and
    the claim's module) importable; pass ``runtime_env`` for that on a cluster.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, connect_timeout: float = 3.0,
                 runtime_env: Mapping[str, Any] | None = None):
        if address:  # before importing ray (seconds): a wrong address fails at once
            _check_ray_address(address, connect_timeout)
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ExecutorError("--executor ray needs the ray package: pip install 'solvable[ray]'")
        self.address = address
        self.workers = workers or None
        self.connect_timeout = connect_timeout
        self.runtime_env = runtime_env
        self._owned = False
        self._remote = None

    def __enter__(self) -> "RayExecutor":
        import ray

        if not ray.is_initialized():
            env = {"env_vars": {v: "1" for v in _THREAD_VARS}}
            if not self.address:
                # a local instance: workers import solvable (and claims defined in tests or scripts)
                # from the driver's path
                path = [p for p in sys.path if p and os.path.isdir(p)]
                env["env_vars"]["PYTHONPATH"] = os.pathsep.join(path)
            if self.runtime_env:
                env = {**env, **dict(self.runtime_env)}
            try:
                if self.address:
                    ray.init(address=self.address, runtime_env=env, log_to_driver=False, logging_level="ERROR")
                else:
                    ray.init(num_cpus=self.workers, include_dashboard=False, runtime_env=env, log_to_driver=False,
                             logging_level="ERROR")
            except Exception as e:  # noqa: BLE001 - whatever ray raises, one line
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ExecutorError(f"ray could not start or connect ({self.address or 'local'}): {msg}") from None
            self._owned = True
        self._remote = ray.remote(num_cpus=1, max_retries=3)(_run_unit)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            import ray

            ray.shutdown()
            self._owned = False

    def run(self, tasks: Sequence[Mapping[str, Any]]) -> Iterator[list[dict]]:
        import ray

        if self._remote is None:
            self.__enter__()
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        window = 4 * cpus
        todo = list(tasks)[::-1]
        pending: list = []
        try:
            while todo or pending:
                while todo and len(pending) < window:
                    pending.append(self._remote.remote(todo.pop()))
                ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                if ready and pending:  # whatever else has finished, in the same transaction
                    more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                    ready += more
                if ready:
                    yield ray.get(ready)
        except BaseException:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise


def _check_ray_address(address: str, timeout: float) -> None:
    if address in ("auto", "local"):
        return
    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    import socket

    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        why = "no answer" if isinstance(e, TimeoutError) or "timed out" in str(e) else (e.strerror or str(e))
        raise ExecutorError(f"ray address {address} does not answer ({why} within {timeout:g} s): start the "
                            "cluster (`ray start --head`) or drop --address for a local instance") from None


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def make_executor(executor: Any = "local", workers: int | None = None, address: str | None = None) -> Any:
    """An executor from its name: ``"local"`` (``workers=0``: inline), ``"inline"`` or ``"ray"``;
    an executor object is returned as is."""
    if not isinstance(executor, str):
        return executor
    if executor == "ray":
        return RayExecutor(address=address, workers=workers)
    if address:
        raise ExecutorError("--address is for --executor ray")
    if executor == "inline" or (executor == "local" and workers == 0):
        return InlineExecutor()
    if executor == "local":
        if workers is not None and workers < 0:
            raise ExecutorError(f"--workers {workers}: must be >= 0 (0 runs the units in this process)")
        return LocalExecutor(workers)
    raise ExecutorError(f"--executor {executor!r}: must be local or ray")


# --------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """A rich progress bar on a terminal, plain lines on stderr otherwise, nothing when quiet."""

    def __init__(self, mode: str | bool | None, label: str):
        if mode is None or mode is True:
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode or "off"
        self.label = label
        self._bar = None
        self.total = self.done = 0
        self._next_line = 0.0

    def start(self, total: int, cached: int) -> None:
        self.total, self.done = total, 0
        if self.mode == "bar" and total:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=total)
        elif self.mode == "lines":
            print(f"{self.label}: {total} units to compute, {cached} already in the store", file=sys.stderr,
                  flush=True)
            self._next_line = time.monotonic() + 2.0

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
        elif self.mode == "lines" and (time.monotonic() >= self._next_line or self.done == self.total):
            print(f"{self.label}: {self.done}/{self.total} units", file=sys.stderr, flush=True)
            self._next_line = time.monotonic() + 2.0

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


# --------------------------------------------------------------------------------------------
# The driver


@dataclass
class RunStats:
    computed: int = 0
    cached: int = 0
    stored: int = 0


def run_units(units: Sequence[Unit], store: Store, executor: Any, progress: Any = False,
              stats: RunStats | None = None) -> dict[str, dict]:
    """Records of all ``units`` (``{key: record}``): those in ``store`` are read, the missing ones
    are computed by ``executor`` and stored, one transaction per batch of finished units.

    Ctrl-C raises :class:`SweepInterrupted` after storing every finished unit.
    """
    by_key: dict[str, Unit] = {}
    for u in units:
        by_key.setdefault(u.key, u)
    have = store.get(by_key)
    todo = [u for k, u in by_key.items() if k not in have]
    stats = stats if stats is not None else RunStats()
    stats.cached += len(have)
    prog = progress if isinstance(progress, _Progress) else _Progress(progress, "sweep")
    prog.start(len(todo), len(have))
    stored_before = len(have)
    try:
        if todo:
            for batch in executor.run([u.task() for u in todo]):
                recs = [_record(by_key[r["key"]], r["verdict"]) for r in batch]
                stats.stored += store.put(recs)
                stats.computed += len(recs)
                for r in recs:
                    have[r["key"]] = r
                prog.advance(len(recs))
    except KeyboardInterrupt:
        prog.stop()
        stored = len(store.get(by_key))
        raise SweepInterrupted(stored - stored_before, len(by_key) - stored) from None
    finally:
        prog.stop()
    return have


# --------------------------------------------------------------------------------------------
# Grids and axes


@dataclass(frozen=True)
class GridSpec:
    """``NAME=LO:HI:N[:log]`` (``N`` evenly spaced values, geometric with ``log``) or
    ``NAME=V1,V2,...`` (the listed values)."""

    name: str
    lo: float | None = None
    hi: float | None = None
    n: int = 0
    log: bool = False
    values: tuple = ()
    text: str = ""

    def points(self) -> list:
        if self.values:
            return list(self.values)
        if self.log:
            return [float(v) for v in np.geomspace(self.lo, self.hi, self.n)]
        return [float(v) for v in np.linspace(self.lo, self.hi, self.n)]


def _number(flag: str, text: str, what: str, which: str) -> float:
    try:
        v = float(what)
    except ValueError:
        raise SweepError(f"{flag} {text}: {which} {what!r} is not a number") from None
    if not math.isfinite(v):
        raise SweepError(f"{flag} {text!r}: {which} must be finite (got {what})")
    return v


def _check_interval(flag: str, text: str, lo: float, hi: float, log: bool) -> None:
    if not lo < hi:
        raise SweepError(f"{flag} {text}: LO must be < HI (got LO={lo:g}, HI={hi:g})")
    if log and lo <= 0:
        raise SweepError(f"{flag} {text}: a log grid needs 0 < LO < HI (got LO={lo:g}, HI={hi:g}); it cannot "
                         "reach or cross 0")


def parse_grid(text: str, flag: str = "--grid") -> GridSpec:
    """Parse ``NAME=LO:HI:N[:log]`` or ``NAME=V1,V2,...`` (``SweepError`` naming the problem)."""
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
        raise SweepError(f"{flag} {text!r}: expected NAME=LO:HI:N[:log] or NAME=V1,V2,...")
    if ":" not in spec:
        vals = tuple(v.strip() for v in spec.split(",") if v.strip())
        if len(vals) < 1:
            raise SweepError(f"{flag} {text!r}: no values")
        return GridSpec(name, values=vals, text=text)
    parts = spec.split(":")
    log = False
    if len(parts) == 4:
        if parts[3].strip().lower() != "log":
            raise SweepError(f"{flag} {text!r}: the 4th field may only be 'log' (got {parts[3]!r})")
        log = True
        parts = parts[:3]
    if len(parts) != 3:
        raise SweepError(f"{flag} {text!r}: expected NAME=LO:HI:N[:log]")
    lo = _number(flag, text, parts[0].strip(), "LO")
    hi = _number(flag, text, parts[1].strip(), "HI")
    try:
        n = int(parts[2].strip())
    except ValueError:
        raise SweepError(f"{flag} {text}: N must be an integer >= 2 (got {parts[2].strip()!r})") from None
    if n < 2:
        raise SweepError(f"{flag} {text}: N must be an integer >= 2 (got {n})")
    _check_interval(flag, text, lo, hi, log)
    return GridSpec(name, lo, hi, n, log, text=text)


@dataclass(frozen=True)
class Axis:
    """A map axis ``NAME=LO:HI[:log]``: lattice coordinate ``u`` in [0, 1] maps to
    ``lo + u (hi - lo)``, or ``lo (hi/lo)^u`` on a log axis."""

    name: str
    lo: float
    hi: float
    log: bool = False
    integer: bool = False

    def value(self, u: float) -> Any:
        if u <= 0:
            v = self.lo
        elif u >= 1:
            v = self.hi
        elif self.log:
            v = self.lo * (self.hi / self.lo) ** u
        else:
            v = self.lo + u * (self.hi - self.lo)
        return int(round(v)) if self.integer else float(v)

    def coord(self, v: Any) -> Any:
        v = np.asarray(v, dtype=float)
        if self.log:
            return np.log(v / self.lo) / math.log(self.hi / self.lo)
        return (v - self.lo) / (self.hi - self.lo)

    def to_json(self) -> dict:
        return {"name": self.name, "lo": self.lo, "hi": self.hi, "log": self.log}


def parse_axis(text: str, flag: str = "--x") -> Axis:
    """Parse ``NAME=LO:HI[:log]``."""
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
        raise SweepError(f"{flag} {text!r}: expected NAME=LO:HI[:log]")
    parts = spec.split(":")
    log = False
    if len(parts) == 3:
        if parts[2].strip().lower() != "log":
            raise SweepError(f"{flag} {text!r}: the 3rd field may only be 'log' (got {parts[2]!r})")
        log = True
        parts = parts[:2]
    if len(parts) != 2:
        raise SweepError(f"{flag} {text!r}: expected NAME=LO:HI[:log]")
    lo = _number(flag, text, parts[0].strip(), "LO")
    hi = _number(flag, text, parts[1].strip(), "HI")
    _check_interval(flag, text, lo, hi, log)
    return Axis(name, lo, hi, log)


def _check_names(claim: Any, names: Iterable[str], flag: str) -> None:
    fields = claim.params.fields()
    for n in names:
        if n not in fields:
            raise SweepError(f"{flag} {n}: {claim.id} has no parameter {n!r} (its parameters: {', '.join(fields)})")


def _parse_value(claim: Any, name: str, value: Any) -> Any:
    if isinstance(value, str):
        return claim.params.parse(name, value)
    return value


def _fixed_params(claim: Any, fixed: Mapping[str, Any] | None, flag: str = "--set") -> dict[str, Any]:
    fixed = dict(fixed or {})
    _check_names(claim, fixed, flag)
    try:
        out = {k: _parse_value(claim, k, v) for k, v in fixed.items()}
        claim.params(**out)
    except ValueError as e:
        raise SweepError(str(e)) from None
    return out


# --------------------------------------------------------------------------------------------
# sweep


@dataclass
class SweepResult:
    """The records of a sweep, one per unit (point x seed) in grid order, and what was computed."""

    claim_id: str
    names: list[str]
    records: list[dict]
    computed: int
    cached: int
    store: str

    @property
    def passed(self) -> bool:
        return all(r["passed"] for r in self.records)

    def rows(self) -> list[dict]:
        return [_flat_row(r) for r in self.records]

    def verdicts(self) -> list:
        """The stored verdicts as :class:`~solvable.claims.Verdict` objects (``info["sweep"]`` holds
        the unit's key, seed replicate and seed)."""
        from ..report import Verdicts

        return Verdicts(_verdict_from_record(r) for r in self.records)

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame.from_records(self.rows())


def _verdict_from_record(rec: Mapping[str, Any]) -> Any:
    from ..claims import Verdict

    v = {"statement": "", "reference": ""} | dict(rec["verdict"])
    names = {f.name for f in dataclasses.fields(Verdict)}
    kw = {k: v[k] for k in names if k in v and k != "mutants"}
    for k in ("error", "tolerance", "margin"):
        if isinstance(kw.get(k), str):
            kw[k] = float(kw[k])
        if kw.get(k) is None:
            kw[k] = math.nan
    kw["info"] = dict(kw.get("info") or {}) | {"sweep": {"key": rec["key"], "replicate": rec["replicate"],
                                                         "seed": rec["seed"]}}
    return Verdict(**kw)


_FIXED_COLUMNS = ("key", "claim_id", "claim_version", "replicate", "seed", "backend", "device", "dtype",
                  "passed", "margin", "diverged", "predicted", "measured", "error", "tolerance", "seconds")


def _flat_row(rec: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for c in ("key", "claim_id", "claim_version"):
        row[c] = rec[c]
    for name, v in rec["params"].items():
        row[f"param_{name}" if name in _FIXED_COLUMNS else name] = v
    for c in _FIXED_COLUMNS[3:]:
        row[c] = rec[c]
    return row


def _points(claim: Any, grid: Mapping[str, Any] | Sequence[Any], fixed: Mapping[str, Any]) -> tuple[list[str], list[dict]]:
    specs: list[GridSpec] = []
    if isinstance(grid, Mapping):
        for name, spec in grid.items():
            if isinstance(spec, str):
                specs.append(parse_grid(f"{name}={spec}"))
            else:
                vals = tuple(spec)
                if len(vals) < 1:
                    raise SweepError(f"--grid {name}: no values")
                specs.append(GridSpec(name, values=vals, text=f"{name}={list(vals)}"))
    else:
        specs = [s if isinstance(s, GridSpec) else parse_grid(s) for s in grid]
    if not specs:
        raise SweepError("a sweep needs at least one --grid NAME=LO:HI:N[:log]")
    names = [s.name for s in specs]
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        raise SweepError(f"--grid {dup[0]}: given twice")
    _check_names(claim, names, "--grid")
    both = set(names) & set(fixed)
    if both:
        n = sorted(both)[0]
        raise SweepError(f"--grid {n} and --set {n}: a parameter is either swept or set, not both")
    fields = claim.params.fields()
    axes = []
    for s in specs:
        try:
            vals = [_parse_value(claim, s.name, v) for v in s.points()]
        except ValueError as e:
            raise SweepError(f"--grid {s.text}: {e}") from None
        if fields[s.name]["integer"]:
            vals = [int(round(v)) for v in vals]
        for v in vals:  # each value against the parameter's own range (cross-parameter rules below)
            m = fields[s.name]
            try:
                if m["choices"] is not None or m["integer"] or isinstance(v, (int, float)):
                    from ..claims import _validate

                    _validate(s.name, v, m)
            except ValueError as e:
                raise SweepError(f"--grid {s.text}: {e}") from None
        axes.append(list(dict.fromkeys(vals)))
    points = []
    for combo in _product(axes):
        point = dict(fixed) | dict(zip(names, combo))
        try:
            claim.params(**point)
        except ValueError as e:
            where = ", ".join(f"{n}={v}" for n, v in zip(names, combo))
            raise SweepError(f"--grid point {where}: {e}") from None
        points.append(point)
    return names, points


def _product(axes: list[list]) -> Iterator[tuple]:
    import itertools

    return itertools.product(*axes)


def sweep(claim: Any, grid: Mapping[str, Any] | Sequence[Any], *, seeds: int = 1, fixed: Mapping[str, Any] | None = None,
          store: str | os.PathLike | Store | None = None, executor: Any = "local", workers: int | None = None,
          address: str | None = None, backend: str = "numpy", device: str = "cpu", dtype: str | None = None,
          progress: Any = False, frame: bool | None = None) -> Any:
    """Check ``claim`` at every grid point and seed; return a pandas DataFrame (one row per unit:
    parameters, seed, predicted, measured, error, tolerance, margin, passed), or, without pandas
    (or with ``frame=False``), the :class:`SweepResult`.

    Args:
      claim: a :class:`~solvable.claims.Claim` or its id.
      grid: ``{name: "LO:HI:N[:log]" or [values]}``, or a list of ``"NAME=LO:HI:N[:log]"`` texts.
      seeds: seed replicates per point; each unit's seed is derived from its key.
      fixed: other parameters set for every point (``--set``).
      store: an SQLite path (created if missing), a :class:`Store`, or None for a throw-away store
        in memory. A rerun on the same store computes only missing units.
      executor: ``"local"`` (processes; ``workers=0`` runs inline), ``"ray"`` (``address``) or an
        executor object.

    >>> import solvable
    >>> res = solvable.sweep("stability.gd_threshold", {"eta": [0.1, 1.0]}, workers=0,
    ...                      frame=False)  # doctest: +SKIP
    """
    claim = _as_claim(claim)
    if not (isinstance(seeds, int) and seeds >= 1):
        raise SweepError(f"--seeds {seeds}: must be an integer >= 1")
    fixed = _fixed_params(claim, fixed)
    names, points = _points(claim, grid, fixed)
    try:
        units = make_units(claim, points, seeds=seeds, backend=backend, device=device, dtype=dtype)
    except ValueError as e:
        raise SweepError(str(e)) from None
    ex = make_executor(executor, workers, address)
    st, own = _open_store(store)
    stats = RunStats()
    try:
        with ex:
            recs = run_units(units, st, ex, _Progress(progress, f"sweep {claim.id}"), stats)
        result = SweepResult(claim.id, names, [recs[u.key] for u in units], stats.computed, stats.cached, st.path)
    finally:
        if own:
            st.close()
    if frame is None:
        try:
            import pandas  # noqa: F401
        except ImportError:
            frame = False
        else:
            frame = True
    return result.frame() if frame else result


def _as_claim(claim: Any) -> Any:
    if isinstance(claim, str):
        import solvable

        return solvable.get(claim)
    return claim


def _open_store(store: Any) -> tuple[Store, bool]:
    if isinstance(store, Store):
        return store, False
    return Store(":memory:" if store is None else store), True


# --------------------------------------------------------------------------------------------
# Regime-of-validity maps

_DEPTH = 24  # lattice: 2^24 steps per axis; coordinates k / 2^24 are exact in binary


@dataclass
class RegimeMap:
    """Where a claim's check passes and fails over one or two parameters.

    Attributes:
      points: every evaluated lattice point: ``{x, (y), label, margin, passed, failed}`` with
        ``label`` ``"pass"``, ``"fail"`` (some seed failed) or ``"invalid"`` (parameters rejected).
      cells: the leaf cells ``{x0, x1, (y0, y1), label}`` (``"mixed"`` where corners disagree).
      boundary: points on cell edges whose end points disagree (pass vs fail): ``{x, (y), dx, (dy)}``,
        the verdict flips within ``dx`` of ``x`` (along that edge; ``dy = 0`` on a horizontal edge).
      intervals: (1-D) the ``[lo, hi]`` intervals where the claim holds, each end within ``dx``.
      evaluations: units used (computed + read from the store); levels: refinement levels reached.
    """

    claim_id: str
    x: Axis
    y: Axis | None
    fixed: dict
    seeds: int
    points: list[dict] = field(default_factory=list)
    cells: list[dict] = field(default_factory=list)
    boundary: list[dict] = field(default_factory=list)
    intervals: list[list[float]] = field(default_factory=list)
    evaluations: int = 0
    computed: int = 0
    cached: int = 0
    level: int = 0
    budget_exhausted: bool = False
    counts_by_level: list[int] = field(default_factory=list)

    def end_width(self) -> float:
        """1-D: the largest half-gap between a passing point and its non-passing neighbour."""
        pts = sorted((p["x"], p["label"]) for p in self.points)
        gaps = [0.5 * abs(b[0] - a[0]) for a, b in zip(pts, pts[1:]) if (a[1] == "pass") != (b[1] == "pass")]
        return max(gaps, default=0.0)

    @property
    def h(self) -> float:
        """Finest cell size reached, in lattice units (the axis spans 1)."""
        return 2.0 ** -self.level

    def to_json(self) -> dict:
        return {
            "id": self.claim_id, "x": self.x.to_json(), "y": None if self.y is None else self.y.to_json(),
            "fixed": _plain(self.fixed), "seeds": self.seeds, "evaluations": self.evaluations,
            "computed": self.computed, "cached": self.cached, "level": self.level, "h": self.h,
            "budget_exhausted": self.budget_exhausted, "evaluations_by_level": self.counts_by_level,
            "boundary": self.boundary, "intervals": self.intervals, "points": self.points, "cells": self.cells,
        }

    def summary(self) -> str:
        n_pass = sum(p["label"] == "pass" for p in self.points)
        n_fail = sum(p["label"] == "fail" for p in self.points)
        n_inv = sum(p["label"] == "invalid" for p in self.points)
        where = f"{self.x.name} in [{self.x.lo:g}, {self.x.hi:g}]" + (
            "" if self.y is None else f" x {self.y.name} in [{self.y.lo:g}, {self.y.hi:g}]")
        lines = [f"{self.claim_id} over {where}: {self.evaluations} units ({self.computed} computed, "
                 f"{self.cached} from the store), {len(self.points)} points, finest cell 1/{2 ** self.level} of "
                 f"each axis; {n_pass} pass, {n_fail} fail" + (f", {n_inv} invalid" if n_inv else "")
                 + ("; budget exhausted before the boundary was fully refined" if self.budget_exhausted else "")]
        if self.y is None:
            if self.intervals:
                iv = " and ".join(f"[{a:.6g}, {b:.6g}]" for a, b in self.intervals)
                lines.append(f"holds on {iv} (each inner end within {self.end_width():.3g}: half the last gap)")
            else:
                lines.append("holds nowhere on the axis")
        else:
            lines.append(f"boundary: {len(self.boundary)} points (each within half a cell edge of a flip)")
        return "\n".join(lines)

    def plot(self, ax: Any = None) -> Any:
        """Draw the map: pass/fail cells, evaluated points coloured by log10(error/tolerance),
        the boundary points. Returns the axes."""
        import matplotlib.pyplot as plt
        from matplotlib.colors import TwoSlopeNorm
        from matplotlib.patches import Rectangle

        if ax is None:
            _, ax = plt.subplots(figsize=(6.4, 4.8) if self.y is not None else (7, 2.6))
        fill = {"pass": "#cfe8d4", "fail": "#f3cccc", "invalid": "#dddddd", "mixed": "#ffffff"}
        margins = np.array([_as_float(p["margin"]) for p in self.points], dtype=float)
        margins = np.where(margins > 0, margins, np.nan)
        logm = np.log10(np.clip(margins, 1e-6, 1e6))
        finite = logm[np.isfinite(logm)]
        lo, hi = (min(-1e-3, finite.min()), max(1e-3, finite.max())) if finite.size else (-1, 1)
        norm = TwoSlopeNorm(vcenter=0.0, vmin=lo, vmax=hi)
        if self.y is None:
            for c in self.cells:
                ax.axvspan(c["x0"], c["x1"], color=fill[c["label"]], lw=0)
            xs = np.array([p["x"] for p in self.points])
            sc = ax.scatter(xs, np.where(np.isfinite(logm), logm, np.nan), c=logm, cmap="coolwarm", norm=norm, s=14,
                            zorder=3)
            ax.axhline(0, color="k", lw=0.6)
            for b in self.boundary:
                ax.axvline(b["x"], color="k", lw=1.2, ls="--")
            ax.set_ylabel("log10(error / tolerance)")
        else:
            for c in self.cells:
                ax.add_patch(Rectangle((c["x0"], c["y0"]), c["x1"] - c["x0"], c["y1"] - c["y0"],
                                       facecolor=fill[c["label"]], edgecolor="#999999", lw=0.2))
            xs = np.array([p["x"] for p in self.points])
            ys = np.array([p["y"] for p in self.points])
            sc = ax.scatter(xs, ys, c=logm, cmap="coolwarm", norm=norm, s=6, zorder=3)
            if self.boundary:
                ax.plot([b["x"] for b in self.boundary], [b["y"] for b in self.boundary], "k.", ms=2.5, zorder=4,
                        label="boundary")
            ax.set_ylabel(self.y.name)
            ax.set_ylim(self.y.lo, self.y.hi)
            if self.y.log:
                ax.set_yscale("log")
        ax.set_xlim(self.x.lo, self.x.hi)
        if self.x.log:
            ax.set_xscale("log")
        ax.set_xlabel(self.x.name)
        ax.set_title(f"{self.claim_id}: green holds, red fails", fontsize=9)
        ax.figure.colorbar(sc, ax=ax, label="log10(error / tolerance)")
        return ax

    def save(self, path: str | os.PathLike) -> str:
        import matplotlib

        matplotlib.use(os.environ.get("MPLBACKEND", "Agg"), force=False)
        import matplotlib.pyplot as plt

        ax = self.plot()
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=120)
        plt.close(ax.figure)
        return str(path)


def _point_label(recs: list[dict]) -> tuple[str, float | None]:
    margins = [r["margin"] for r in recs if r["margin"] is not None]
    margin = max(margins) if margins else None
    return ("pass" if all(r["passed"] for r in recs) else "fail"), margin


def regime_map(claim: Any, x: Axis | str, y: Axis | str | None = None, *, budget: int = 400, initial: int = 8,
               max_level: int = 12, seeds: int = 1, fixed: Mapping[str, Any] | None = None,
               store: str | os.PathLike | Store | None = None, executor: Any = "local", workers: int | None = None,
               address: str | None = None, backend: str = "numpy", device: str = "cpu", dtype: str | None = None,
               progress: Any = False) -> RegimeMap:
    """Map where ``claim`` holds over axis ``x`` (and ``y``): a quadtree (binary tree in 1-D)
    refined where pass meets fail, within ``budget`` units (points x seeds; the initial grid of
    ``(initial + 1)^2`` points is always evaluated).

    A point passes when every seed passes; its colour is the largest ``error / tolerance``. Points
    whose parameters the claim rejects are ``"invalid"`` (not evaluated, not counted). Refinement
    goes level by level, coarsest first; within a level that the budget cannot finish, the cells
    nearest to ``error / tolerance = 1`` go first.
    """
    claim = _as_claim(claim)
    x = parse_axis(x, "--x") if isinstance(x, str) else x
    y = parse_axis(y, "--y") if isinstance(y, str) else y
    if not (isinstance(seeds, int) and seeds >= 1):
        raise SweepError(f"--seeds {seeds}: must be an integer >= 1")
    if not (isinstance(initial, int) and initial >= 1 and initial & (initial - 1) == 0):
        raise SweepError(f"initial={initial}: must be a power of 2")
    if not (isinstance(budget, int) and budget >= 1):
        raise SweepError(f"--budget {budget}: must be an integer >= 1")
    axes = [x] if y is None else [x, y]
    _check_names(claim, [a.name for a in axes], "--x" if y is None else "--x/--y")
    if y is not None and x.name == y.name:
        raise SweepError(f"--x {x.name} and --y {y.name}: the two axes must be different parameters")
    fixed = _fixed_params(claim, fixed)
    for a in axes:
        if a.name in fixed:
            raise SweepError(f"--set {a.name}: {a.name} is a map axis")
    fields = claim.params.fields()
    axes = [dataclasses.replace(a, integer=bool(fields[a.name]["integer"])) for a in axes]
    x, y = axes[0], (axes[1] if len(axes) > 1 else None)
    ex = make_executor(executor, workers, address)
    st, own = _open_store(store)
    be = claim.resolve_backend(backend, device, dtype)
    dim = len(axes)
    N = 1 << _DEPTH
    labels: dict[tuple, str] = {}
    margins: dict[tuple, float | None] = {}
    stats = RunStats()
    result = RegimeMap(claim.id, x, y, fixed, seeds)
    prog = _Progress(progress, f"map {claim.id}")

    def coords(pt: tuple) -> dict:
        return {a.name: a.value(k / N) for a, k in zip(axes, pt)}

    def evaluate(pts: list[tuple]) -> int:
        """Evaluate new lattice points; returns how many units they used."""
        new = [p for p in dict.fromkeys(pts) if p not in labels]
        units_by_pt: dict[tuple, list[Unit]] = {}
        for p in new:
            point = dict(fixed) | coords(p)
            try:
                params = claim.params(**point)
            except ValueError:
                labels[p], margins[p] = "invalid", None
                continue
            over = tuple(sorted((k, _plain(v)) for k, v in point.items()))
            units_by_pt[p] = [Unit(claim, params, r, be.name, be.device, be.dtype, over) for r in range(seeds)]
        all_units = [u for us in units_by_pt.values() for u in us]
        if all_units:
            recs = run_units(all_units, st, ex, prog, stats)
            for p, us in units_by_pt.items():
                labels[p], margins[p] = _point_label([recs[u.key] for u in us])
        return len(all_units)

    def corners(cell: tuple) -> list[tuple]:
        *lo, s = cell
        if dim == 1:
            return [(lo[0],), (lo[0] + s,)]
        i, j = lo
        return [(i, j), (i + s, j), (i, j + s), (i + s, j + s)]

    def edge_points(a: tuple, b: tuple) -> list[tuple]:
        """Evaluated lattice points on the segment a-b (recursive midpoints present in ``labels``)."""
        mid = tuple((u + v) // 2 for u, v in zip(a, b))
        if mid == a or mid == b or mid not in labels:
            return []
        return edge_points(a, mid) + [mid] + edge_points(mid, b)

    def boundary_labels(cell: tuple) -> set[str]:
        cs = corners(cell)
        out = {labels[c] for c in cs}
        if dim == 1:
            return out
        for a, b in ((cs[0], cs[1]), (cs[0], cs[2]), (cs[1], cs[3]), (cs[2], cs[3])):
            out.update(labels[p] for p in edge_points(a, b))
        return out

    def children(cell: tuple) -> list[tuple]:
        *lo, s = cell
        h = s // 2
        if dim == 1:
            return [(lo[0], h), (lo[0] + h, h)]
        i, j = lo
        return [(i, j, h), (i + h, j, h), (i, j + h, h), (i + h, j + h, h)]

    def child_points(cell: tuple) -> list[tuple]:
        return [c for ch in children(cell) for c in corners(ch)]

    def splittable(cell: tuple) -> bool:
        s = cell[-1]
        if s < 2:
            return False
        # an integer axis whose cell spans at most one integer step cannot be split further
        for a, lo in zip(axes, cell[:-1]):
            if a.integer and abs(a.value((lo + s) / N) - a.value(lo / N)) <= 1:
                return False
        return True

    def closeness(cell: tuple) -> float:
        ms = [margins.get(c) for c in corners(cell)]
        vals = [abs(math.log(m)) for m in ms if m is not None and m > 0 and math.isfinite(m)]
        return min(vals) if vals else math.inf

    try:
        with ex:
            s0 = N // initial
            if dim == 1:
                leaves = [(i * s0, s0) for i in range(initial)]
            else:
                leaves = [(i * s0, j * s0, s0) for i in range(initial) for j in range(initial)]
            level = int(math.log2(initial))
            used = evaluate([c for cell in leaves for c in corners(cell)])
            result.counts_by_level.append(used)
            while True:
                mixed = [c for c in leaves if len(boundary_labels(c)) > 1 and splittable(c)]
                if not mixed or level >= max_level:
                    break
                size = max(c[-1] for c in mixed)
                todo = sorted((c for c in mixed if c[-1] == size), key=closeness)
                left = budget - used
                chosen, new_pts = [], set()
                for c in todo:
                    pts = {p for p in child_points(c) if p not in labels} - new_pts
                    if len(new_pts) * seeds + len(pts) * seeds > left:
                        result.budget_exhausted = True
                        break
                    chosen.append(c)
                    new_pts |= pts
                if not chosen:
                    result.budget_exhausted = True
                    break
                n_used = evaluate(sorted(new_pts))
                used += n_used
                chosen_set = set(chosen)
                leaves = [c for c in leaves if c not in chosen_set] + [ch for c in chosen for ch in children(c)]
                level = max(level, int(round(math.log2(N / (size // 2)))))
                result.counts_by_level.append(n_used)
                if result.budget_exhausted:
                    break
    finally:
        prog.stop()
        if own:
            st.close()

    result.level = level
    result.computed, result.cached = stats.computed, stats.cached
    result.evaluations = stats.computed + stats.cached
    for p in sorted(labels):
        d = dict(zip(("x", "y"), (a.value(c / N) for a, c in zip(axes, p))))
        result.points.append(d | {"label": labels[p], "margin": _json_cell(margins[p])})
    for cell in sorted(leaves):
        labs = boundary_labels(cell)
        lab = labs.pop() if len(labs) == 1 else "mixed"
        *lo, s = cell
        d = {"x0": x.value(lo[0] / N), "x1": x.value((lo[0] + s) / N)}
        if dim == 2:
            d |= {"y0": y.value(lo[1] / N), "y1": y.value((lo[1] + s) / N)}
        result.cells.append(d | {"label": lab})
    result.boundary = _boundary(leaves, labels, axes, corners, edge_points, N)
    if dim == 1:
        result.intervals = _intervals(labels, x, N)
    return result


def _boundary(leaves: list[tuple], labels: dict, axes: list[Axis], corners: Callable, edge_points: Callable,
              N: int) -> list[dict]:
    """Midpoints of the finest lattice segments whose end points are pass and fail."""
    segs: set[tuple] = set()
    for cell in leaves:
        cs = corners(cell)
        pairs = [(cs[0], cs[1])] if len(axes) == 1 else [(cs[0], cs[1]), (cs[0], cs[2]), (cs[1], cs[3]),
                                                          (cs[2], cs[3])]
        for a, b in pairs:
            chain = [a] + edge_points(a, b) + [b]
            for u, v in zip(chain, chain[1:]):
                if {labels[u], labels[v]} == {"pass", "fail"}:
                    segs.add((u, v))
    out = []
    for u, v in sorted(segs):
        d = {}
        for a, name, cu, cv in zip(axes, ("x", "y"), u, v):
            xu, xv = a.value(cu / N), a.value(cv / N)
            mid = math.sqrt(xu * xv) if a.log else 0.5 * (xu + xv)
            d[name] = mid
            # the flip lies between xu and xv: within the larger half (the halves differ on a log axis)
            d["d" + name] = max(abs(mid - xu), abs(xv - mid))
        out.append(d)
    return out


def _intervals(labels: dict, x: Axis, N: int) -> list[list[float]]:
    """1-D: maximal runs of passing points, each end at the midpoint towards the next point
    (within half the gap; at an end of the axis, exact)."""
    pts = sorted(labels)
    out: list[list[float]] = []
    start = None
    for i, p in enumerate(pts):
        ok = labels[p] == "pass"
        if ok and start is None:
            start = x.lo if i == 0 else _mid(x, pts[i - 1][0], p[0], N)
        if not ok and start is not None:
            out.append([start, _mid(x, pts[i - 1][0], p[0], N)])
            start = None
    if start is not None:
        out.append([start, x.hi])
    return out


def _mid(a: Axis, u: int, v: int, N: int) -> float:
    xu, xv = a.value(u / N), a.value(v / N)
    return math.sqrt(xu * xv) if a.log else 0.5 * (xu + xv)


# --------------------------------------------------------------------------------------------
# falsify --beyond


@dataclass
class BeyondResult:
    """The wide search: every example drawn over the valid range, checked and stored; the failing
    ones (``counterexamples``, largest error/tolerance first), each marked inside or beyond the
    claim's domain."""

    claim_id: str
    examples: list[dict]
    counterexamples: list[dict]
    computed: int
    cached: int
    axes: tuple[str, ...]

    def to_json(self) -> dict:
        return {"id": self.claim_id, "examples": len(self.examples), "found": bool(self.counterexamples),
                "counterexamples": self.counterexamples, "computed": self.computed, "cached": self.cached,
                "axes": list(self.axes), "points": self.examples}

    def plot(self, claim: Any, ax: Any = None) -> Any:
        """The examples on the plane of the two main parameters: passing dots, failing crosses, the
        claim's domain as a dashed box."""
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        if ax is None:
            _, ax = plt.subplots(figsize=(6.4, 4.8))
        fields = claim.params.fields()
        xn = self.axes[0]
        yn = self.axes[1] if len(self.axes) > 1 else None

        def ys(pts: list[dict]) -> list:
            return [p["params"][yn] for p in pts] if yn else [0.0] * len(pts)

        ok = [e for e in self.examples if e["passed"]]
        bad = [e for e in self.examples if not e["passed"]]
        ax.scatter([e["params"][xn] for e in ok], ys(ok), s=14, c="#2a7", label="holds")
        ax.scatter([e["params"][xn] for e in bad], ys(bad), s=40, c="#c33", marker="x", label="counterexample")
        dx = fields[xn]["domain"]
        dy = fields[yn]["domain"] if yn else (-0.5, 0.5)
        if dx is not None and dy is not None and len(dx) == 2 and len(dy) == 2:
            ax.add_patch(Rectangle((dx[0], dy[0]), dx[1] - dx[0], dy[1] - dy[0], fill=False, ls="--", lw=1.2,
                                   label="claimed domain"))
        ax.set_xlabel(xn)
        ax.set_ylabel(yn or "")
        if fields[xn]["log"]:
            ax.set_xscale("log")
        if yn and fields[yn]["log"]:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set_title(f"{self.claim_id}: wide search", fontsize=9)
        return ax


def _in_domain(claim: Any, params: Mapping[str, Any]) -> bool:
    for name, m in claim.params.fields().items():
        dom, v = m.get("domain"), params.get(name)
        if dom is None:
            continue
        if m.get("choices") is not None:
            if v not in dom:
                return False
        elif isinstance(v, (int, float)) and not (dom[0] <= v <= dom[1]):
            return False
    return True


def _main_axes(claim: Any) -> tuple[str, ...]:
    fields = claim.params.fields()
    numeric = [n for n, m in fields.items() if m.get("choices") is None]
    first = claim.sweep if claim.sweep in numeric else (numeric[0] if numeric else None)
    rest = [n for n in numeric if n != first]
    return tuple(n for n in (first, rest[0] if rest else None) if n)


def draw_examples(claim: Any, n: int, seed: int = 0, wide: bool = True) -> list:
    """``n`` parameter sets drawn by hypothesis over the valid range (``wide``) or the domain; the
    same ``seed`` gives the same draws."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    drawn: list = []

    @hseed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate], derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(_beyond_strategy(claim.params) if wide else _domain_strategy(claim.params))
    def collect(p: Any) -> None:
        drawn.append(p)

    collect()
    return drawn


def _domain_strategy(params_cls: Any) -> Any:
    from ..testing import params_strategy

    return params_strategy(params_cls)


def _beyond_strategy(params_cls: Any) -> Any:
    """The whole valid range (unbounded sides cut ``testing.UNBOUNDED_REACH`` domain-scales beyond
    the domain, open bounds moved a little inside) and the domain too: the same region as
    ``falsify --wide`` searches (:func:`solvable.testing.search_region`)."""
    from ..testing import params_strategy

    return params_strategy(params_cls, wide=True)


def falsify_beyond(claim: Any, *, max_examples: int = 50, seed: int = 0, store: Any = None, executor: Any = "local",
                   workers: int | None = None, address: str | None = None, backend: str = "numpy",
                   device: str = "cpu", progress: Any = False) -> BeyondResult:
    """The wide search, run as a sweep: ``max_examples`` parameter sets drawn over the whole valid
    range (hypothesis), every one checked (in parallel, through the store) rather than stopping at
    the first failure, so that the counterexamples show where beyond its domain the claim breaks."""
    claim = _as_claim(claim)
    drawn = draw_examples(claim, max_examples, seed, wide=True)
    points = []
    for p in drawn:
        d = p.asdict()
        points.append({k: v for k, v in d.items()})
    units = make_units(claim, points, seeds=1, backend=backend, device=device)
    ex = make_executor(executor, workers, address)
    st, own = _open_store(store)
    stats = RunStats()
    try:
        with ex:
            recs = run_units(units, st, ex, _Progress(progress, f"falsify {claim.id} --beyond"), stats)
    finally:
        if own:
            st.close()
    examples = []
    for u in dict((u.key, u) for u in units).values():
        r = recs[u.key]
        examples.append({"params": r["params"], "passed": r["passed"], "margin": r["margin"],
                         "in_domain": _in_domain(claim, r["params"]), "key": r["key"],
                         "predicted": r["predicted"], "measured": r["measured"], "error": r["error"],
                         "tolerance": r["tolerance"], "diverged": r["diverged"],
                         "exception": (r["verdict"].get("info") or {}).get("exception")})
    bad = sorted((e for e in examples if not e["passed"]),
                 key=lambda e: -(e["margin"] if e["margin"] is not None and not math.isnan(e["margin"]) else math.inf))
    return BeyondResult(claim.id, examples, bad, stats.computed, stats.cached, _main_axes(claim))


# --------------------------------------------------------------------------------------------
# export


def export(store: str | os.PathLike, fmt: str = "csv", out: Any = None, claim_id: str | None = None) -> int:
    """Write the store's units as CSV, JSON (an array of rows) or Parquet (needs pandas and pyarrow)
    to ``out`` (a path, or a text stream for csv/json; default stdout). Returns the number of rows."""
    if fmt not in ("csv", "json", "parquet"):
        raise SweepError(f"--format {fmt!r}: must be csv, parquet or json")
    st = Store(store, create=False)
    try:
        rows = [_flat_row(r) for r in st.records(claim_id)]
    finally:
        st.close()
    if fmt == "parquet":
        if out is None or not isinstance(out, (str, os.PathLike)):
            raise SweepError("--format parquet writes a file: give --output PATH")
        try:
            import pandas as pd
            import pyarrow  # noqa: F401
        except ImportError:
            raise SweepError("--format parquet needs pandas and pyarrow: pip install pandas pyarrow") from None
        frame = pd.DataFrame.from_records([{k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                                            for k, v in r.items()} for r in rows])
        frame.to_parquet(out)
        return len(rows)
    close = False
    if out is None:
        stream = sys.stdout
    elif isinstance(out, (str, os.PathLike)):
        stream, close = open(out, "w", newline=""), True
    else:
        stream = out
    try:
        if fmt == "json":
            json.dump([{k: _json_cell(v) for k, v in r.items()} for r in rows], stream, indent=1)
            stream.write("\n")
        else:
            import csv

            cols: list[str] = []
            for r in rows:
                for k in r:
                    if k not in cols:
                        cols.append(k)
            w = csv.DictWriter(stream, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
    finally:
        if close:
            stream.close()
    return len(rows)


def _json_cell(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v
