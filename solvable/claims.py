"""Claims: the unit of the library.

A claim couples a closed form (``predicted``) with a simulation of the model that never calls it
(``measured``), and a tolerance whose size has a stated reason. Parameters are frozen dataclasses
whose fields carry their valid range and the narrower domain on which the claim is asserted; the
same names are used by ``solvable verify --set NAME=VALUE``.

Writing a claim (the pattern every model module follows)::

    @dataclass(frozen=True)
    class GDThresholdParams(Params):
        eta: float = param(0.1, low=0, low_open=True, domain=(1e-3, 10), log=True,
                           doc="step size")

    def _measure(p, backend, seed):
        ...  # simulate the recurrence, never call the closed form
        return Measurement(value=bisected, stderr=None)

    register(Claim(
        id="stability.gd_threshold",
        statement="GD on a quadratic of curvature lambda is stable iff lambda < 2/eta.",
        reference="derived here from the companion matrix; Cohen et al. 2021, arXiv 2103.00065",
        params=GDThresholdParams,
        predicted=lambda p: 2 / p.eta,
        measured=_measure,
        tolerance=lambda p, m: Tolerance(1e-6, "bisection stopped at relative width 1e-7"),
        sweep="eta",
    ))
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .backend import Backend, get_backend
from .checks import check_choice, check_int, check_range, describe_range

__all__ = [
    "param",
    "Params",
    "Measurement",
    "Tolerance",
    "Claim",
    "Verdict",
    "register",
    "get",
    "select",
    "all_claims",
    "UnknownClaimError",
    "relative_error",
    "relative_errors",
    "max_abs_error",
    "margin",
    "MutantResult",
    "STATUSES",
    "error_verdict",
    "failure_message",
    "outside_domain",
]


# --------------------------------------------------------------------------------------------
# Parameters


def param(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    choices: tuple | None = None,
    domain: tuple | None = None,
    log: bool = False,
    doc: str = "",
) -> Any:
    """A dataclass field for a claim parameter.

    Args:
      default: the value used when none is given.
      low, high, low_open, high_open: the valid range; values outside raise ``ValueError``.
      integer: the parameter is an integer.
      choices: the parameter takes one of these values (strings or numbers).
      domain: ``(lo, hi)`` (or, with ``choices``, a tuple of values) on which the claim is
        asserted: the hypothesis strategy draws from it. Defaults to the valid range.
      log: draw log-uniformly from the domain (scale parameters).
      doc: what the parameter is, with its symbol.
    """
    meta = dict(low=low, high=high, low_open=low_open, high_open=high_open, integer=integer,
                choices=choices, domain=domain, log=log, doc=doc)
    return field(default=default, metadata={"solvable": meta})


def _meta(f: dataclasses.Field) -> dict:
    return f.metadata.get("solvable", {})


@dataclass(frozen=True)
class Params:
    """Base class of claim parameters: validates every field on construction."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            m = _meta(f)
            if not m:
                continue
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _validate(f.name, value, m))
        self.check()

    def check(self) -> None:
        """Cross-parameter validation; override to raise ``ValueError`` (e.g. ``a_max <= a_min``)."""

    @classmethod
    def fields(cls) -> dict[str, dict]:
        return {f.name: _meta(f) | {"default": f.default} for f in dataclasses.fields(cls) if _meta(f)}

    @classmethod
    def parse(cls, name: str, text: str) -> Any:
        """Convert the command-line text of parameter ``name`` to its type (``ValueError`` if bad)."""
        m = cls.fields()[name]
        if m["choices"] is not None:
            for c in m["choices"]:
                if str(c) == text:
                    return c
            return check_choice(name, text, m["choices"])
        if m["integer"]:
            lo, hi = _int_bounds(m)
            return check_int(name, text, lo, hi)
        try:
            return float(text)
        except ValueError:
            rng = describe_range(m["low"], m["high"], m["low_open"], m["high_open"])
            raise ValueError(f"{name}={text!r} is not a number: {name} must be in {rng}") from None

    def replace(self, **changes: Any) -> "Params":
        return dataclasses.replace(self, **changes)

    def asdict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _int_bounds(m: dict) -> tuple[int | None, int | None]:
    """The closed integer range of an integer parameter's (possibly open) bounds."""
    lo = None if m["low"] is None else math.ceil(m["low"] + (1e-9 if m["low_open"] else 0))
    hi = None if m["high"] is None else math.floor(m["high"] - (1e-9 if m["high_open"] else 0))
    return lo, hi


def describe_param_range(m: dict) -> str:
    """The valid range of a parameter in words: ``(0, inf)``, ``integers in [2, 100]``, ``one of a, b``."""
    if m["choices"] is not None:
        return "one of " + ", ".join(map(str, m["choices"]))
    if m["integer"]:
        lo, hi = _int_bounds(m)
        return "integers in " + describe_range(lo, hi, False, False)
    return describe_range(m["low"], m["high"], m["low_open"], m["high_open"])


def describe_param_domain(m: dict) -> str | None:
    """The domain on which the claim is asserted, or None where it is the whole valid range."""
    if m["domain"] is None:
        return None
    if m["choices"] is not None:
        return "one of " + ", ".join(map(str, m["domain"]))
    return describe_range(m["domain"][0], m["domain"][1], False, False)


def _validate(name: str, value: Any, m: dict) -> Any:
    if m["choices"] is not None:
        return check_choice(name, value, m["choices"])
    if m["integer"]:
        lo, hi = _int_bounds(m)
        return check_int(name, value, lo, hi)
    return check_range(name, value, m["low"], m["high"], low_open=m["low_open"], high_open=m["high_open"])


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class Measurement:
    """What a simulation returns.

    Attributes:
      value: the measured number or array (same shape as ``predicted``).
      stderr: its standard error where it is a statistical estimate.
      diverged: the simulation diverged (a result, not an error); ``diverged_step`` says when.
      checks: qualitative conditions of the claim (``{"loss_decreases": True}``); all must hold.
      info: further numbers worth reporting (fitted exponents, step counts, ...).
    """

    value: Any
    stderr: Any = None
    diverged: bool = False
    diverged_step: int | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tolerance:
    """How far measured may be from predicted, and why that far.

    ``value`` is one number, or an array with one allowance per entry of ``predicted`` (then the
    claim's ``error`` returns one error per entry, e.g. :func:`relative_errors`, and every entry
    must be within its own allowance). It is computed without the closed form under test.
    """

    value: Any
    reason: str


def relative_error(predicted: Any, measured: Any) -> float:
    """``||measured - predicted|| / ||predicted||`` (2-norm over all entries)."""
    p = np.asarray(predicted, dtype=float).ravel()
    m = np.asarray(measured, dtype=float).ravel()
    if p.shape != m.shape:
        raise ValueError(f"predicted has shape {p.shape} but measured has {m.shape}: shapes must match")
    denom = float(np.linalg.norm(p))
    num = float(np.linalg.norm(m - p))
    return num / denom if denom > 0 else num


def relative_errors(predicted: Any, measured: Any) -> np.ndarray:
    """Per-entry ``|measured_i - predicted_i| / |predicted_i|`` (absolute where ``predicted_i`` is 0),
    for claims whose :class:`Tolerance` gives one allowance per entry."""
    p = np.asarray(predicted, dtype=float).ravel()
    m = np.asarray(measured, dtype=float).ravel()
    if p.shape != m.shape:
        raise ValueError(f"predicted has shape {p.shape} but measured has {m.shape}: shapes must match")
    scale = np.where(p != 0, np.abs(p), 1.0)
    return np.abs(m - p) / scale


def max_abs_error(predicted: Any, measured: Any) -> float:
    p = np.asarray(predicted, dtype=float).ravel()
    m = np.asarray(measured, dtype=float).ravel()
    return float(np.max(np.abs(m - p))) if p.size else 0.0


def _jsonable(x: Any) -> Any:
    if x is None or isinstance(x, (bool, str)):
        return x
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    arr = np.asarray(x)
    if arr.dtype == bool:
        return arr.tolist()
    if arr.dtype.kind in "iu":
        return arr.tolist()
    if arr.dtype.kind == "f":
        # JSON has no NaN or inf: non-finite entries become None (a divergence is reported by the
        # verdict's `diverged` field, never by a NaN in the numbers)
        if arr.ndim == 0:
            v = float(arr)
            return v if math.isfinite(v) else None
        return [_jsonable(v) for v in arr]
    return str(x)


def _within(err: Any, tol: Any) -> bool:
    """Every error entry finite and within its allowance (scalars broadcast)."""
    e = np.asarray(err, dtype=float)
    t = np.asarray(tol, dtype=float)
    return bool(e.size and np.all(np.isfinite(e)) and np.all(e <= t))


def margin(err: Any, tol: Any) -> float:
    """``max(error / tolerance)`` over entries: below 1 passes, above 1 fails (inf if tol is 0)."""
    e = np.asarray(err, dtype=float)
    t = np.asarray(tol, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(t > 0, e / np.where(t > 0, t, 1.0), np.where(e > 0, np.inf, 0.0))
    r = np.where(np.isnan(r), np.inf, r)
    return float(np.max(r)) if r.size else math.inf


def _number_or_list(x: Any) -> Any:
    a = np.asarray(x, dtype=float)
    return float(a) if a.ndim == 0 else a.ravel().tolist()


@dataclass
class MutantResult:
    """A wrong formula judged against the same measurement: ``rejected`` when its error exceeds the
    tolerance; ``margin`` is error / tolerance (above 1 rejects)."""

    name: str
    predicted: Any
    error: Any
    margin: float
    rejected: bool


STATUSES = ("passed", "failed", "error")


@dataclass
class Verdict:
    """One claim checked once: the JSON record of ``solvable verify --json``.

    ``error`` and ``tolerance`` are numbers, or lists with one entry per entry of ``predicted``
    for claims with per-entry allowances; ``margin`` is ``max(error / tolerance)``.
    ``mutants`` holds, when asked for, each declared wrong formula judged on the same measurement.
    ``status`` is ``"passed"``, ``"failed"`` (the check ran and the claim does not hold) or
    ``"error"`` (the check raised: no verdict on the claim; ``passed`` is False); ``message`` says
    why in one line (the failed check first, then divergence, then the worst error entry; for an
    error, the exception). ``bound`` is the claim's ``bound`` (``"upper"``, ``"lower"`` or None).
    """

    id: str
    statement: str
    reference: str
    params: dict[str, Any]
    predicted: Any
    measured: Any
    error: float
    tolerance: float
    passed: bool
    backend: str
    device: str
    seconds: float
    tolerance_reason: str = ""
    stderr: Any = None
    diverged: bool = False
    diverged_step: int | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    margin: float = math.nan
    mutants: dict[str, MutantResult] = field(default_factory=dict)
    status: str = ""
    message: str = ""
    bound: str | None = None

    def __post_init__(self) -> None:
        if not self.status:
            self.status = "passed" if self.passed else "failed"
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r} is not allowed: status must be one of {', '.join(STATUSES)}")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        out = {k: _jsonable(v) for k, v in d.items()}
        for k in ("error", "tolerance", "margin"):  # a diverged run has error inf: kept as "inf"
            v = d[k]
            if isinstance(v, float) and math.isinf(v):
                out[k] = str(v)
        for name, mres in d["mutants"].items():
            if isinstance(mres["margin"], float) and math.isinf(mres["margin"]):
                out["mutants"][name]["margin"] = "inf"
        return out


# --------------------------------------------------------------------------------------------
# Claims

ErrorFn = Callable[[Any, Any], float]


@dataclass(frozen=True)
class Claim:
    """A statement about a model, checked by closed form against simulation.

    Attributes:
      id: ``<module>.<name>``; the prefix is the module that owns it.
      statement: one sentence with its symbols; where the literature's form fails, says where.
      reference: authors, year, arXiv id, section or equation; or "derived here".
      params: the :class:`Params` subclass (defaults, ranges, domain).
      predicted: ``predicted(params) -> number or array``, the closed form.
      measured: ``measured(params, backend, seed) -> Measurement``, the simulation.
      tolerance: ``tolerance(params, measurement, backend) -> Tolerance`` with a stated reason.
      error: ``error(predicted, measured_value) -> float`` (default :func:`relative_error`).
      sweep: the main parameter, swept in the report's figure; ``sweep_values`` its values.
      summary: maps a predicted/measured value to the one number plotted in the report.
      summary_label: the axis label of that number.
      backends: the backends the simulator supports; a claim asked for another runs on the
        first of these (a torch-only claim asked for numpy runs on torch on the CPU), and its
        verdict says which backend it used.
      mutants: named wrong formulas a reader could plausibly derive (``{"constant 3 for 4":
        lambda p: ...}``), each with the signature of ``predicted``. The claim has power when its
        check rejects every mutant (error above tolerance) at the defaults and on at least
        ``mutant_power`` of the domain draws; the coverage test enforces both.
      mutant_power: the fraction of domain draws on which each mutant must be rejected.
      closed_forms: names of the closed-form functions behind ``predicted`` (in the claim's model
        module, or ``"othermodel.function"``). The simulation and the tolerance must not call them;
        the test suite replaces them with a function that raises while it measures.
      bound: ``None`` for an estimate; ``"upper"`` when the claim is that measured stays below
        predicted, ``"lower"`` above (the report labels such claims as bounds).
    """

    id: str
    statement: str
    reference: str
    params: type[Params]
    predicted: Callable[[Any], Any]
    measured: Callable[[Any, Backend, int], Measurement]
    tolerance: Callable[[Any, Measurement, Backend], Tolerance]
    error: ErrorFn = relative_error
    sweep: str | None = None
    sweep_values: tuple = ()
    summary: Callable[[Any], float] | None = None
    summary_label: str = ""
    backends: tuple[str, ...] = ("numpy", "torch")
    mutants: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    mutant_power: float = 0.8
    closed_forms: tuple[str, ...] = ()
    bound: str | None = None

    def __post_init__(self) -> None:
        if "." not in self.id:
            raise ValueError(f"id={self.id!r} is not of the form <module>.<name>")
        if self.bound not in (None, "upper", "lower"):
            raise ValueError(f"bound={self.bound!r} of {self.id}: must be None, 'upper' or 'lower'")
        if not 0 <= self.mutant_power <= 1:
            raise ValueError(f"mutant_power={self.mutant_power} of {self.id}: must be in [0, 1]")
        if self.sweep is not None and self.sweep not in self.params.fields():
            raise ValueError(f"sweep={self.sweep!r} is not a parameter of {self.id}")

    @property
    def module(self) -> str:
        return self.id.split(".", 1)[0]

    def make_params(self, **overrides: Any) -> Params:
        """Defaults with ``overrides`` applied (validated)."""
        return self.params(**overrides)

    def resolve_backend(self, backend: str | Backend = "numpy", device: str = "cpu",
                        dtype: str | None = None) -> Backend:
        """The backend this claim runs on when asked for ``backend`` on ``device``."""
        be = backend if isinstance(backend, Backend) else get_backend(backend, device, dtype)
        if be.name not in self.backends:
            be = get_backend(self.backends[0], be.device if self.backends[0] == "torch" else "cpu", dtype)
        return be

    def measure(self, params: Params | None = None, backend: str = "numpy", device: str = "cpu",
                seed: int = 0, dtype: str | None = None) -> Measurement:
        """Run the simulation (``measured(params, backend, device, seed)`` of the design)."""
        p = params if params is not None else self.params()
        out = self.measured(p, self.resolve_backend(backend, device, dtype), seed)
        return out if isinstance(out, Measurement) else Measurement(value=out)

    def judge(self, params: Params, predicted: Any, meas: Measurement, tol: Tolerance) -> tuple[Any, float, bool]:
        """``(error, margin, passed)`` of ``predicted`` against a measurement and its tolerance."""
        if meas.diverged:
            return math.inf, math.inf, False
        err = self.error(predicted, meas.value)
        err = _number_or_list(err)
        passed = _within(err, tol.value) and all(meas.checks.values())
        return err, margin(err, tol.value), passed

    def judge_mutants(self, params: Params, meas: Measurement, tol: Tolerance) -> dict[str, MutantResult]:
        """Each declared wrong formula judged on the same measurement and tolerance."""
        out = {}
        for name, fn in self.mutants.items():
            pred = fn(params)
            err, marg, _ = self.judge(params, pred, meas, tol)
            # a mutant is rejected by the comparison alone: the checks inside ``measured`` never see
            # the closed form, so they cannot tell a wrong formula from the right one
            out[name] = MutantResult(name=name, predicted=_jsonable(pred), error=err, margin=marg,
                                     rejected=bool(marg > 1))
        return out

    def check(self, params: Params | None = None, backend: str | Backend = "numpy", device: str = "cpu",
              seed: int = 0, dtype: str | None = None, mutants: bool = False,
              on_error: str = "raise") -> Verdict:
        """Compute predicted and measured, compare them, and return the :class:`Verdict`.

        With ``mutants=True`` the verdict also judges every declared mutant on the same measurement.
        ``on_error="verdict"`` turns an exception raised by the check (a ``MemoryError``, a
        ``ValueError`` from inside the simulation) into a verdict of status ``"error"`` whose
        ``message`` is the exception's first line; the default ``"raise"`` lets it propagate.
        ``KeyboardInterrupt`` always propagates.
        """
        if on_error not in ("raise", "verdict"):
            raise ValueError(f"on_error={on_error!r} is not allowed: on_error must be one of raise, verdict")
        p = params if params is not None else self.params()
        if not isinstance(p, self.params):
            raise ValueError(f"params is a {type(p).__name__}: {self.id} needs {self.params.__name__}")
        be = self.resolve_backend(backend, device, dtype)
        t0 = time.perf_counter()
        try:
            pred = self.predicted(p)
            meas = self.measured(p, be, seed)
            if not isinstance(meas, Measurement):
                meas = Measurement(value=meas)
            seconds = time.perf_counter() - t0
            tol = self.tolerance(p, meas, be)
            err, marg, passed = self.judge(p, pred, meas, tol)
            judged = self.judge_mutants(p, meas, tol) if mutants else {}
        except Exception as exc:
            if on_error == "raise":
                raise
            return error_verdict(self, p, exc, backend=be.name, device=be.device,
                                 seconds=time.perf_counter() - t0)
        return Verdict(
            id=self.id, statement=self.statement, reference=self.reference, params=p.asdict(),
            predicted=_jsonable(pred), measured=_jsonable(meas.value), error=err,
            tolerance=_number_or_list(tol.value),
            passed=passed, backend=be.name, device=be.device, seconds=round(seconds, 4),
            tolerance_reason=tol.reason, stderr=_jsonable(meas.stderr), diverged=meas.diverged,
            diverged_step=meas.diverged_step, checks={k: bool(v) for k, v in meas.checks.items()},
            info=_jsonable(meas.info), margin=marg, mutants=judged, bound=self.bound,
            message="" if passed else failure_message(meas, err, tol.value),
        )


def failure_message(meas: Measurement, err: Any, tol: Any) -> str:
    """Why a check failed, in one line: the failed checks first (they decide the verdict whatever
    the error is), then a divergence, then the entry with the worst error against its allowance."""
    parts = []
    failed = [k for k, ok in meas.checks.items() if not ok]
    if failed:
        parts.append(("failed check: " if len(failed) == 1 else "failed checks: ") + ", ".join(failed))
    if meas.diverged:
        step = "" if meas.diverged_step is None else f" at step {meas.diverged_step}"
        parts.append(f"diverged{step}")
        return "; ".join(parts)
    e = np.atleast_1d(np.asarray(err, dtype=float)).ravel()
    t = np.broadcast_to(np.atleast_1d(np.asarray(tol, dtype=float)).ravel(), e.shape) if e.size else e
    if e.size == 0:
        parts.append("no error was computed")
    elif not np.all(np.isfinite(e)):
        parts.append(f"the error is not finite ({e[~np.isfinite(e)][0]:g})")
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(t > 0, e / np.where(t > 0, t, 1.0), np.where(e > 0, np.inf, 0.0))
        i = int(np.argmax(ratio))
        if ratio[i] > 1:
            where = f"entry {i}: " if e.size > 1 else ""
            parts.append(f"{where}error {e[i]:.4g} > tolerance {t[i]:.4g}")
        elif not failed:
            parts.append(f"error {e[i]:.4g} within tolerance {t[i]:.4g}")
    return "; ".join(parts)


def error_message(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ("out of memory" if isinstance(exc, MemoryError) else "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def error_verdict(claim: "Claim", params: Params, exc: BaseException, *, backend: str = "numpy",
                  device: str = "cpu", seconds: float = 0.0) -> Verdict:
    """The verdict of a check that raised: status ``"error"``, the reason in ``message``, the
    exception and a short traceback in ``info``; no numbers (``error`` and ``tolerance`` are NaN,
    null in JSON)."""
    import traceback

    return Verdict(id=claim.id, statement=claim.statement, reference=claim.reference, params=params.asdict(),
                   predicted=None, measured=None, error=math.nan, tolerance=math.nan, passed=False,
                   backend=backend, device=device, seconds=round(seconds, 4),
                   tolerance_reason="the check raised an exception", status="error",
                   message=error_message(exc), bound=claim.bound,
                   info={"exception": f"{type(exc).__name__}: {exc}",
                         "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__,
                                                                         limit=-4))})


class UnknownClaimError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; a plain line reads better
        return str(self.args[0])


_REGISTRY: dict[str, Claim] = {}


def register(claim: Claim) -> Claim:
    """Add ``claim`` to the registry (re-registering the same id replaces it: notebooks reload)."""
    _REGISTRY[claim.id] = claim
    return claim


def all_claims() -> list[Claim]:
    """The registered claims, sorted by id. The engine registers what is imported; the package's
    face (``solvable.all_claims``) imports ``solvable.models`` first."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get(claim_id: str) -> Claim:
    try:
        return _REGISTRY[claim_id]
    except KeyError:
        raise UnknownClaimError(f"unknown claim id {claim_id!r} (see `solvable list`)") from None


def select(patterns: Sequence[str] | str | None = None) -> list[Claim]:
    """Claims matching ids or module prefixes (``"dln"``, ``"dln.implicit_bias"``); all if empty."""
    claims = all_claims()
    if not patterns:
        return claims
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen: dict[str, Claim] = {}
    for pat in patterns:
        hits = [c for c in claims if c.id == pat or c.id.startswith(pat.rstrip(".") + ".")]
        if not hits:
            raise UnknownClaimError(f"unknown claim id or prefix {pat!r} (see `solvable list`)")
        for c in hits:
            chosen[c.id] = c
    return [chosen[k] for k in sorted(chosen)]


def apply_overrides(claims: Iterable[Claim], overrides: dict[str, str]) -> dict[str, Params]:
    """Parse ``--set NAME=VALUE`` texts into validated params for each claim.

    A name must belong to at least one selected claim; claims without it keep their default.
    Raises ``ValueError`` on an unknown name or a bad value; every message names the claim, the
    parameter, the value and the valid range. A value valid on its own that a claim's
    cross-parameter check refuses is reported as the set value conflicting with the claim's other
    parameters (not as a fault of the parameter the check happens to name).
    """
    claims = list(claims)
    for name in overrides:
        if not any(name in c.params.fields() for c in claims):
            ids = ", ".join(c.id for c in claims)
            raise ValueError(f"--set {name}: no selected claim has a parameter {name!r} (selected: {ids})")
    out = {}
    for c in claims:
        fields = c.params.fields()
        values = {}
        for k, v in overrides.items():
            if k not in fields:
                continue
            try:
                values[k] = _validate(k, c.params.parse(k, v), fields[k])
            except ValueError as e:
                raise ValueError(f"{c.id}: {e}") from None
        try:
            out[c.id] = c.params(**values)
        except ValueError as e:
            given = ", ".join(f"{k}={overrides[k]}" for k in values)
            others = ", ".join(f"{k}={f['default']!r}" for k, f in fields.items() if k not in values)
            raise ValueError(f"{c.id}: --set {given} is valid alone but conflicts with the claim's other "
                             f"parameters ({others}): {e}") from None
    return out


def outside_domain(claim: Claim, params: Params) -> list[str]:
    """One note per parameter whose value lies in the valid range but outside the domain on which
    ``claim`` is asserted (a failure there is not a counterexample to the claim)."""
    notes = []
    for name, m in claim.params.fields().items():
        if m["domain"] is None:
            continue
        v = getattr(params, name)
        if m["choices"] is not None:
            inside = v in m["domain"]
        else:
            inside = m["domain"][0] <= v <= m["domain"][1]
        if not inside:
            notes.append(f"{claim.id}: {name}={v!r} is outside the domain {describe_param_domain(m)} where the "
                         f"claim is asserted (valid: {describe_param_range(m)}): a failure there is not a "
                         "counterexample")
    return notes
