"""Sweeps, the store, executors and regime maps (solvable/tools/sweep.py, solvable/cli_sweep.py).

The claims mapped here are in tests/_sweep_claims.py: a disk (a boundary of known length) and two
boundaries known in closed form from the models, simulated: heavy ball (``eta = 2 + 2 beta`` at
curvature 1, ``stability.heavy_ball_threshold``) and projected GD on the sphere (``elr = 2/(a_max -
a_min)``, ``sphere.projected_threshold``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import _sweep_claims as T
import solvable
from solvable import claims as _claims
from solvable.cli import main
from solvable.tools import sweep as sw

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
NUMBERS = ("predicted", "measured", "error", "tolerance", "margin", "passed", "seed", "params", "diverged")


@pytest.fixture
def toys(monkeypatch):
    """The registry holds the sweep toys (and the engine's toy) only; real models are not loaded."""
    from _toy import TOY_CLAIM

    monkeypatch.setattr(_claims, "_REGISTRY", {c.id: c for c in (*T.ALL, TOY_CLAIM)})
    monkeypatch.setattr(solvable, "load_models", lambda: None)
    return T


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


_WRAPPER = """
import sys, solvable, _sweep_claims as T
from solvable import claims
for c in T.ALL:
    claims.register(c)
solvable.load_models = lambda: None
from solvable.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env(delay: float = 0.0) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS)])
    env["SWEEPTOY_DELAY"] = str(delay)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _spawn(argv, delay=0.0, **kw):
    return subprocess.Popen([sys.executable, "-c", _WRAPPER, *argv], env=_env(delay), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def _count(path) -> int:
    try:
        con = sqlite3.connect(path, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM units").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # not created yet
        return 0


def _wait_for(pred, timeout=60.0, what="condition"):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _numbers(path) -> dict:
    with sw.Store(path, create=False) as st:
        return {r["key"]: {k: r[k] for k in NUMBERS} for r in st.records()}


# --------------------------------------------------------------------------------------------
# keys, seeds, versions


def test_key_is_canonical_and_seed_derives_from_it():
    c = T.DISK
    u1 = sw.make_units(c, [{"x": 1, "y": 0.5}])[0]
    u2 = sw.make_units(c, [{"y": 0.5, "x": 1.0}])[0]
    assert u1.key == u2.key and u1.seed == u2.seed  # int 1 and float 1.0, any order: the same unit
    assert len(u1.key) == 64 and 0 <= u1.seed < 2**31
    u3 = sw.make_units(c, [{"x": 1.0, "y": 0.5}], seeds=2)[1]
    assert u3.replicate == 1 and u3.key != u1.key and u3.seed != u1.seed
    ss = np.random.SeedSequence(int(u1.key, 16)).generate_state(1, dtype=np.uint32)[0]
    assert u1.seed == int(ss) >> 1
    u4 = sw.make_units(c, [{"x": 1.0, "y": 0.5}], backend="torch")[0]
    assert u4.key != u1.key


def test_claim_version_changes_with_the_statement_params_or_reference():
    import dataclasses

    v = sw.claim_version(T.DISK)
    assert v == sw.claim_version(T.DISK)
    assert sw.claim_version(dataclasses.replace(T.DISK, statement="x^2 + y^2 < r^2")) != v
    assert sw.claim_version(dataclasses.replace(T.DISK, reference="other")) != v
    assert sw.claim_version(dataclasses.replace(T.DISK, params=T.HeavyBallParams)) != v
    # the key includes the version: a reworded claim does not reuse old results
    u = sw.make_units(T.DISK, [{}])[0]
    u2 = sw.make_units(dataclasses.replace(T.DISK, statement="new"), [{}])[0]
    assert u.key != u2.key


# --------------------------------------------------------------------------------------------
# the store and sweep()


def test_rerun_computes_only_missing_units_and_never_stores_twice(tmp_path):
    path = tmp_path / "s.sqlite"
    grid = {"x": "-1:1:3", "y": [0.0, 0.5]}
    r1 = sw.sweep(T.DISK, grid, seeds=2, fixed={"noise": 0.1}, store=path, workers=0, frame=False)
    assert (r1.computed, r1.cached, len(r1.records)) == (12, 0, 12)
    r2 = sw.sweep(T.DISK, grid, seeds=2, fixed={"noise": 0.1}, store=path, workers=0, frame=False)
    assert (r2.computed, r2.cached) == (0, 12)
    assert [r["measured"] for r in r2.records] == [r["measured"] for r in r1.records]
    r3 = sw.sweep(T.DISK, {"x": "-1:1:5", "y": [0.0, 0.5]}, seeds=2, fixed={"noise": 0.1}, store=path, workers=0,
                  frame=False)
    assert (r3.computed, r3.cached) == (8, 12)  # x = -0.5, 0.5 are new
    assert _count(path) == 20
    # the seed comes from the key: replicates differ, and the draw is the one of that seed
    a, b = r1.records[0], r1.records[1]
    assert a["replicate"] == 0 and b["replicate"] == 1 and a["measured"] != b["measured"]
    draw = np.random.default_rng(a["seed"]).standard_normal()
    assert a["measured"] == a["params"]["x"] ** 2 + a["params"]["y"] ** 2 + 0.1 * draw
    with sw.Store(path) as st:
        assert st.put([dict(r1.records[0])]) == 0  # a stored key is never stored twice
        assert len(st) == 20


def test_failing_check_is_stored_as_a_failed_unit(tmp_path):
    res = sw.sweep(T.DISK, {"x": [0.0, 1.5]}, fixed={"fail_above": 1.0}, workers=0, frame=False)
    ok, bad = res.records
    assert ok["passed"] and not bad["passed"]
    assert "RuntimeError" in bad["verdict"]["info"]["exception"]


def test_sweep_returns_verdicts_or_a_dataframe(toys, monkeypatch):
    res = solvable.sweep("sweeptoy.disk", {"x": [0.0, 1.5]}, workers=0, frame=False)
    vs = res.verdicts()
    assert [v.passed for v in vs] == [True, False] and vs[0].info["sweep"]["replicate"] == 0

    class FakeFrame:
        @classmethod
        def from_records(cls, rows):
            return rows

    monkeypatch.setitem(sys.modules, "pandas", type(sys)("pandas"))
    sys.modules["pandas"].DataFrame = FakeFrame
    rows = solvable.sweep("sweeptoy.disk", {"x": [0.0, 1.5]}, workers=0)
    assert [r["x"] for r in rows] == [0.0, 1.5] and rows[1]["passed"] is False
    assert {"key", "claim_version", "seed", "predicted", "measured", "error", "tolerance", "margin"} <= set(rows[0])


def test_store_rejects_what_is_not_a_solvable_store(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database\n" * 100)
    with pytest.raises(sw.StoreError, match="not a solvable store"):
        sw.Store(text)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (a)")
    con.commit()
    con.close()
    with pytest.raises(sw.StoreError, match="not a solvable store"):
        sw.Store(other)
    with pytest.raises(sw.StoreError, match="directory"):
        sw.Store(tmp_path)


# --------------------------------------------------------------------------------------------
# command line: output and bad input


def test_sweep_cli_table_json_and_export(toys, capsys, tmp_path):
    store = str(tmp_path / "s.sqlite")
    code, out, err = cli(capsys, "sweep", "sweeptoy.disk", "--grid", "x=0:1.5:4", "--set", "y=0.5", "--store", store,
                         "--workers", "0", "--json")
    assert code == 1  # x = 1.5 lies outside the disk
    data = json.loads(out)
    assert [d["params"]["x"] for d in data] == [0.0, 0.5, 1.0, 1.5]
    assert [d["passed"] for d in data] == [True, True, False, False]
    assert {"key", "predicted", "measured", "error", "tolerance", "passed", "seed"} <= set(data[0])
    assert "4 computed, 0 from the store" in err
    code, out, err = cli(capsys, "sweep", "sweeptoy.disk", "--grid", "x=0:0.5:2", "--set", "y=0.5", "--store", store,
                         "--workers", "0")
    assert code == 0 and "0 computed, 2 from the store" in err and "measured" in out
    code, out, _ = cli(capsys, "export", "--store", store, "--format", "json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 4 and {r["x"] for r in rows} == {0.0, 0.5, 1.0, 1.5}
    csv_path = tmp_path / "s.csv"
    assert cli(capsys, "export", "--store", store, "--format", "csv", "--output", str(csv_path))[0] == 0
    import csv

    with open(csv_path) as f:
        recs = list(csv.DictReader(f))
    assert len(recs) == 4 and float(recs[0]["measured"]) == rows[0]["measured"]


def _not_a_store(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("not a database\n" * 50)
    return str(p)


@pytest.mark.parametrize("argv, needle", [
    (["sweep", "sweeptoy.disk", "--grid", "zeta=0:1:3"], "sweeptoy.disk has no parameter 'zeta'"),
    (["sweep", "sweeptoy.disk", "--grid", "x=1:0:3"], "LO must be < HI"),
    (["sweep", "sweeptoy.disk", "--grid", "x=0:0:3"], "LO must be < HI"),
    (["sweep", "sweeptoy.disk", "--grid", "x=0:1:1"], "N must be an integer >= 2"),
    (["sweep", "sweeptoy.disk", "--grid", "x=0:1:two"], "N must be an integer >= 2"),
    (["sweep", "sweeptoy.disk", "--grid", "x=-1:1:5:log"], "a log grid needs 0 < LO < HI"),
    (["sweep", "sweeptoy.disk", "--grid", "x=0:1:5:log"], "a log grid needs 0 < LO < HI"),
    (["sweep", "sweeptoy.disk", "--grid", "x=a:1:5"], "LO 'a' is not a number"),
    (["sweep", "sweeptoy.disk", "--grid", "x=0:5:3"], "--grid x=0:5:3: x=2.5 is out of range"),
    (["sweep", "sweeptoy.disk", "--grid", "x=0:1:3", "--set", "x=1"], "either swept or set"),
    (["sweep", "sweeptoy.disk"], "at least one --grid"),
    (["sweep", "nosuch.claim", "--grid", "x=0:1:3"], "unknown claim id 'nosuch.claim'"),
    (["sweep", "sweeptoy.disk", "--grid", "x=0:1:3", "--store", "NOTASTORE"], "not a solvable store"),
    (["map", "sweeptoy.disk", "--x", "x=1:-1"], "LO must be < HI"),
    (["map", "sweeptoy.disk", "--x", "zeta=0:1"], "has no parameter 'zeta'"),
    (["map", "sweeptoy.disk", "--x", "x=-1:1", "--y", "x=-1:1"], "must be different parameters"),
    (["map", "sweeptoy.disk", "--x", "x=-1:1:log"], "a log grid needs 0 < LO < HI"),
    (["map", "sweeptoy.disk", "--x", "x=-1:1", "--store", "NOTASTORE"], "not a solvable store"),
    (["export", "--store", "NOTASTORE"], "not a solvable store"),
    (["export", "--store", "MISSING"], "no such file"),
])
def test_bad_input_exits_2_with_one_line(toys, capsys, tmp_path, argv, needle):
    argv = [a.replace("NOTASTORE", _not_a_store(tmp_path)).replace("MISSING", str(tmp_path / "none.sqlite"))
            for a in argv]
    code, out, err = cli(capsys, *argv, "--workers", "0") if argv[0] != "export" else cli(capsys, *argv)
    assert code == 2, err
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err


def test_parquet_without_pandas_is_a_usage_error(toys, capsys, tmp_path, monkeypatch):
    store = str(tmp_path / "s.sqlite")
    sw.sweep(T.DISK, {"x": [0.0]}, store=store, workers=0, frame=False)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import fails as if not installed
    code, out, err = cli(capsys, "export", "--store", store, "--format", "parquet", "--output", str(tmp_path / "p"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pandas and pyarrow" in err


def test_ray_address_that_does_not_answer_fails_fast(toys, capsys):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t0 = time.monotonic()
    code, out, err = cli(capsys, "sweep", "sweeptoy.disk", "--grid", "x=0:1:3", "--executor", "ray", "--address",
                         f"127.0.0.1:{port}")
    assert time.monotonic() - t0 < 5
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "does not answer" in err or "needs the ray package" in err


# --------------------------------------------------------------------------------------------
# interruptions: Ctrl-C, a killed worker, a killed driver; the resumed store equals one run


GRID = ["--grid", "x=-1.5:1.5:8", "--grid", "y=-1:1:4", "--seeds", "2", "--set", "noise=0.05"]
N_UNITS = 8 * 4 * 2


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run, in this process."""
    path = tmp_path_factory.mktemp("ref") / "ref.sqlite"
    sw.sweep(T.DISK, ["x=-1.5:1.5:8", "y=-1:1:4"], seeds=2, fixed={"noise": 0.05}, store=path, workers=0,
             frame=False)
    return _numbers(path)


def _resume_and_compare(path, reference):
    before = _count(path)
    res = sw.sweep(T.DISK, ["x=-1.5:1.5:8", "y=-1:1:4"], seeds=2, fixed={"noise": 0.05}, store=path, workers=0,
                   frame=False)
    assert (res.computed, res.cached) == (N_UNITS - before, before)
    assert _numbers(path) == reference


def test_ctrl_c_stores_what_finished_and_the_rerun_resumes(tmp_path, reference):
    path = str(tmp_path / "s.sqlite")
    proc = _spawn(["sweep", "sweeptoy.disk", *GRID, "--store", path, "--workers", "1", "--json"], delay=0.04)
    _wait_for(lambda: _count(path) >= 8, what="8 stored units")
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err.strip().splitlines()[-1] and "rerun the same command" in err
    n = _count(path)
    assert 8 <= n < N_UNITS
    _resume_and_compare(path, reference)


def test_killed_worker_then_killed_driver_lose_nothing_stored(tmp_path, reference):
    import psutil

    path = str(tmp_path / "s.sqlite")
    proc = _spawn(["sweep", "sweeptoy.disk", *GRID, "--store", path, "--workers", "2", "--json"], delay=0.04)
    _wait_for(lambda: _count(path) >= 6, what="6 stored units")

    def workers():
        return [p for p in psutil.Process(proc.pid).children() if "resource_tracker" not in " ".join(p.cmdline())]

    ws = workers()
    assert ws
    ws[0].kill()  # a worker dies: the driver restarts the pool and goes on
    n1 = _count(path)
    _wait_for(lambda: _count(path) >= n1 + 6, what="progress after the worker died")
    alive = workers()
    os.kill(proc.pid, signal.SIGKILL)  # the driver dies
    proc.communicate(timeout=30)

    def gone(w):
        try:
            return w.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    for w in alive:  # its workers notice and leave
        _wait_for(lambda: gone(w), timeout=10, what="orphaned worker to exit")
    n = _count(path)
    assert n1 + 6 <= n < N_UNITS
    _resume_and_compare(path, reference)


# --------------------------------------------------------------------------------------------
# Ray


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "OMP_NUM_THREADS": "1"}}
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR", runtime_env=env)
    except Exception as e:  # noqa: BLE001
        # Ray's raylet gives its Python agent a fixed 30 s to start; on a machine loaded several
        # times over its cores it misses that (Ray's limit, not the executor's): say so and skip
        if "timed out during startup" not in str(e):
            raise
        ray.shutdown()
        pytest.skip("a local Ray instance did not start within Ray's 30 s (raylet startup timed out: machine "
                    "overloaded)")
    yield ray
    ray.shutdown()


def test_local_and_ray_executors_store_identical_numbers(ray_local, tmp_path):
    grid = ["x=-1.5:1.5:4", "y=-1:1:3"]
    local, remote = tmp_path / "local.sqlite", tmp_path / "ray.sqlite"
    r1 = sw.sweep(T.DISK, grid, seeds=2, fixed={"noise": 0.3}, store=local, workers=2, frame=False)
    r2 = sw.sweep(T.DISK, grid, seeds=2, fixed={"noise": 0.3}, store=remote, executor="ray", frame=False)
    assert r1.computed == r2.computed == 24
    a, b = _numbers(local), _numbers(remote)
    assert a.keys() == b.keys() and a == b


# --------------------------------------------------------------------------------------------
# maps


def _dist_to_circle(b, r):
    return abs(math.hypot(b["x"], b["y"]) - r)


def test_map_of_a_disk_is_within_half_a_cell_and_costs_its_boundary_length():
    counts = {}
    for r in (0.5, 1.0):
        m = sw.regime_map(T.DISK, "x=-2:2", "y=-2:2", fixed={"r": r}, budget=10**5, max_level=7, workers=0)
        assert m.level == 7 and not m.budget_exhausted
        h = 4 / 2**7
        # every boundary point: the flip is on its cell edge, within half of it
        assert all(_dist_to_circle(b, r) <= max(b["dx"], b["dy"]) + 1e-12 for b in m.boundary)
        assert max(max(b["dx"], b["dy"]) for b in m.boundary) == pytest.approx(h / 2)
        # every point of the circle has a boundary point within a cell diagonal
        t = np.linspace(0, 2 * np.pi, 400)
        bx = np.array([[b["x"], b["y"]] for b in m.boundary])
        circ = np.stack([r * np.cos(t), r * np.sin(t)], 1)
        assert np.max(np.min(np.linalg.norm(circ[:, None] - bx[None], axis=2), axis=1)) <= math.sqrt(2) * h
        counts[r] = m
    # the cost follows the boundary's length (x2), not the disk's area (x4) ...
    ratio = counts[1.0].evaluations / counts[0.5].evaluations
    assert 1.5 <= ratio <= 2.5, (counts[0.5].evaluations, counts[1.0].evaluations)
    # ... and each level costs about twice the previous one (a length in cells), not four times
    per_level = counts[1.0].counts_by_level
    assert all(1.6 <= b / a <= 2.4 for a, b in zip(per_level[2:], per_level[3:])), per_level
    assert counts[1.0].evaluations < (2**7 + 1) ** 2 / 10  # a uniform grid of that resolution


def _segments_cross(m, f_x, f_y, slack):
    """Each boundary point's edge crosses the true boundary: on a horizontal edge the true x*(y) is
    within dx of x; on a vertical edge the true y*(x) within dy of y."""
    for b in m.boundary:
        if b["dx"] > 0:
            assert abs(b["x"] - f_x(b["y"])) <= b["dx"] + slack, b
        else:
            assert abs(b["y"] - f_y(b["x"])) <= b["dy"] + slack, b


def test_map_finds_the_heavy_ball_threshold():
    from solvable.models.stability import heavy_ball_threshold

    m = sw.regime_map(T.HEAVY_BALL, "eta=0.5:5", "beta=0:0.9", initial=4, max_level=6, budget=10**4, workers=0)
    assert m.level == 6 and not m.budget_exhausted
    # true boundary: threshold curvature (2 + 2 beta)/eta equals the curvature 1
    eta_star = lambda beta: heavy_ball_threshold(1.0, beta)  # noqa: E731
    beta_star = lambda eta: (eta - 2) / 2  # noqa: E731
    # slack: the claim passes up to |z1| = 1 + 1e-3, which moves the boundary by 1e-3 (1 - beta) in eta
    _segments_cross(m, eta_star, beta_star, slack=1e-3)
    assert max(b["dx"] for b in m.boundary) == pytest.approx(4.5 / 2**7)
    betas = np.linspace(0, 0.9, 50)
    pts = np.array([[b["x"], b["y"]] for b in m.boundary])
    scale = np.array([4.5, 0.9])
    for beta in betas:  # the whole line is found, within a cell diagonal (in axis units)
        d = np.min(np.linalg.norm((pts - [eta_star(beta), beta]) / scale, axis=1))
        assert d <= math.sqrt(2) / 2**6
    print(f"heavy ball map: {m.evaluations} evaluations, per level {m.counts_by_level}")


def test_map_finds_the_sphere_threshold_on_a_log_axis():
    from solvable.models.sphere import projected_threshold

    m = sw.regime_map(T.SPHERE, "a_max=1.5:4", "elr=0.1:3:log", initial=4, max_level=6, budget=10**4, workers=0)
    assert m.level == 6 and not m.budget_exhausted
    elr_star = lambda a: projected_threshold(1.0, a)  # noqa: E731
    a_star = lambda elr: 1.0 + 2.0 / elr  # noqa: E731
    _segments_cross(m, a_star, elr_star, slack=1e-9)
    y = m.y
    for a in np.linspace(1.5, 4, 40):
        e = elr_star(a)
        if not 0.1 <= e <= 3:
            continue
        d = min(math.hypot((b["x"] - a) / 2.5, float(y.coord(b["y"]) - y.coord(e))) for b in m.boundary)
        assert d <= math.sqrt(2) / 2**6
    print(f"sphere map: {m.evaluations} evaluations, per level {m.counts_by_level}")


def test_one_dimensional_map_gives_the_interval_and_reuses_the_store(tmp_path):
    store = tmp_path / "m.sqlite"
    m = sw.regime_map(T.DISK, "x=-2:2", fixed={"y": 0.6}, budget=15, store=store, workers=0)
    (lo, hi), = m.intervals
    dx = max(b["dx"] for b in m.boundary)
    assert m.budget_exhausted and m.evaluations <= 15
    assert abs(lo + 0.8) <= dx and abs(hi - 0.8) <= dx and dx <= 4 / 2**5 and m.end_width() == dx
    m2 = sw.regime_map(T.DISK, "x=-2:2", fixed={"y": 0.6}, budget=60, store=store, workers=0)
    # the lattice points repeat, so nothing already stored is recomputed; 1-D costs 2 points a level
    assert m2.cached == m.evaluations and m2.level > m.level and m2.counts_by_level[-1] == 2
    (lo2, hi2), = m2.intervals
    assert abs(lo2 + 0.8) <= m2.end_width() < dx


def test_map_budget_is_respected_and_cli_writes_the_figure(toys, capsys, tmp_path):
    fig = tmp_path / "map.png"
    code, out, err = cli(capsys, "map", "sweeptoy.disk", "--x", "x=-2:2", "--y", "y=-2:2", "--budget", "150",
                         "--store", str(tmp_path / "m.sqlite"), "--workers", "0", "--figure", str(fig), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["evaluations"] <= 150 and data["budget_exhausted"] and data["boundary"]
    assert fig.stat().st_size > 1000
    code, out, _ = cli(capsys, "map", "sweeptoy.disk", "--x", "x=-2:2", "--set", "y=0.6", "--budget", "60",
                       "--store", str(tmp_path / "m.sqlite"), "--workers", "0", "--figure", str(fig))
    assert code == 0 and "holds on [-0.8" in out


def test_falsify_beyond_reports_counterexamples_beyond_the_domain(toys, capsys, tmp_path):
    fig = tmp_path / "beyond.png"
    code, out, err = cli(capsys, "falsify", "toy.sample_mean", "--beyond", "--max-examples", "30", "--workers", "0",
                         "--figure", str(fig), "--json")
    data = json.loads(out)
    assert code == 1 and data["found"] and data["examples"] >= 20
    assert all(c["params"]["kind"] == "broken" and not c["in_domain"] for c in data["counterexamples"])
    assert fig.stat().st_size > 1000
    code, out, _ = cli(capsys, "falsify", "toy.sample_mean", "--beyond", "--max-examples", "30", "--workers", "0")
    assert code == 1 and "beyond the claimed domain, 0 inside it" in out
