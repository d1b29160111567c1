"""Conformance suite over every registered strategy, plus property tests."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alray.acquisition as acq
from alray.acquisition import SCORES, available, requirements, select
from tests.acquisition.conftest import make_pool

STRATEGIES = available()
CANONICAL = sorted(
    {
        n
        for n in STRATEGIES
        if ":" in n
        or n in {"random", "kcenter", "badge", "batchbald", "cluster_margin", "typiclust"}
    }
)
# one representative per family keeps the hypothesis run fast
FAMILIES = [
    "topk:bald",
    "topk:margin",
    "random",
    "kcenter",
    "badge",
    "batchbald",
    "power:bald",
    "softmax:entropy",
    "softrank:margin",
    "cluster_margin",
    "typiclust",
]

P, E = make_pool(n=120, t=5, c=3, d=6, seed=3)


def _inputs(strategy, n):
    req = requirements(strategy)
    return {
        "probs": P[:n] if "probs" in req else None,
        "embeddings": E[:n] if "embeddings" in req else None,
    }


def test_contract_names():
    assert set(SCORES) == {
        "least_confidence",
        "margin",
        "ratio",
        "entropy",
        "bald",
        "variation_ratio",
        "mean_std",
    }
    for s in SCORES:
        assert s in STRATEGIES and f"topk:{s}" in STRATEGIES
    for name in [
        "random",
        "kcenter",
        "badge",
        "batchbald",
        "powerbald",
        "cluster_margin",
        "typiclust",
        "softmax:bald",
        "power:bald",
    ]:
        assert name in STRATEGIES


def test_requirements_table():
    assert requirements("random") == set()
    assert requirements("kcenter") == {"embeddings"}
    assert requirements("badge") == {"probs", "embeddings"}
    assert requirements("batchbald") == {"probs"}
    assert requirements("topk:bald") == requirements("bald") == {"probs"}
    assert requirements("typiclust") == {"embeddings"}
    assert requirements("cluster_margin") == {"probs", "embeddings"}
    assert acq.accepts_scores("bald") and acq.accepts_scores("powerbald")
    assert not acq.accepts_scores("kcenter")
    for name in STRATEGIES:
        assert requirements(name) <= {"scores", "probs", "embeddings"}


@pytest.mark.parametrize("strategy", CANONICAL)
def test_conformance(strategy):
    n, k = 120, 7
    labeled = np.zeros(n, bool)
    labeled[::9] = True
    kw = _inputs(strategy, n)
    a = select(strategy, k=k, labeled=labeled, seed=5, **kw)
    assert a.dtype == np.int64 and a.shape == (k,)
    assert len(set(a.tolist())) == k and not labeled[a].any()
    b = select(strategy, k=k, labeled=labeled, seed=5, **kw)
    np.testing.assert_array_equal(a, b)
    # k beyond what is available returns everything available
    big = select(strategy, k=10 * n, labeled=labeled, seed=0, **kw)
    assert sorted(big.tolist()) == np.flatnonzero(~labeled).tolist()
    # torch inputs give the same answer
    torch = pytest.importorskip("torch")
    kw_t = {key: (None if v is None else torch.from_numpy(v)) for key, v in kw.items()}
    np.testing.assert_array_equal(select(strategy, k=k, labeled=labeled, seed=5, **kw_t), a)


@pytest.mark.parametrize("strategy", CANONICAL)
def test_missing_inputs_named(strategy):
    req = requirements(strategy)
    for missing in req:
        kw = _inputs(strategy, 50)
        kw[missing] = None
        with pytest.raises(ValueError, match=missing):
            select(strategy, k=3, labeled=np.zeros(50, bool), **kw)


def test_bad_arguments():
    with pytest.raises(ValueError, match="k=0"):
        select("random", k=0, labeled=np.zeros(5, bool))
    with pytest.raises(ValueError, match="k="):
        select("random", k=2.5, labeled=np.zeros(5, bool))
    with pytest.raises(ValueError, match="Valid names: .*kcenter"):
        select("kcentre", k=1, embeddings=E)
    with pytest.raises(ValueError, match="Did you mean 'kcenter'"):
        select("kcentre", k=1, embeddings=E)
    with pytest.raises(ValueError, match="pool size"):
        select("kcenter", k=1, embeddings=E, labeled=np.zeros(3, bool))
    with pytest.raises(ValueError, match="labeled: must be a boolean"):
        select("random", k=1, labeled=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="pool size N"):
        select("random", k=1)
    with pytest.raises(ValueError, match="groups"):
        select("random", k=1, labeled=np.zeros(4, bool), min_gap_ms=10)
    with pytest.raises(ValueError, match="timestamps_ms"):
        select("random", k=1, labeled=np.zeros(4, bool), groups=np.zeros(4), min_gap_ms=10)
    with pytest.raises(ValueError, match="device"):
        select("random", k=1, labeled=np.zeros(4, bool), device="tpu")
    with pytest.raises(TypeError):
        select("random", k=1, labeled=np.zeros(4, bool), no_such_option=1)
    with pytest.raises(ValueError, match="embeddings"):
        select("kcenter", k=1, embeddings=np.full((4, 2), np.nan, np.float32))


def test_all_labeled_returns_empty():
    out = select("kcenter", k=3, embeddings=E, labeled=np.ones(len(E), bool))
    assert out.dtype == np.int64 and out.size == 0


def test_scores_replace_probs():
    s = np.linspace(0, 1, 50, dtype=np.float32)
    assert select("bald", k=3, scores=s).tolist() == [49, 48, 47]
    assert select("powerbald", k=3, scores=s, seed=1).size == 3


@st.composite
def problems(draw):
    n = draw(st.integers(1, 60))
    k = draw(st.integers(1, 70))
    labeled = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    n_groups = draw(st.integers(1, 5))
    groups = np.array(draw(st.lists(st.integers(0, n_groups - 1), min_size=n, max_size=n)))
    times = np.array(draw(st.lists(st.integers(0, 2000), min_size=n, max_size=n)), dtype=float)
    gap = draw(st.sampled_from([None, 0.0, 100.0, 500.0]))
    quota = draw(st.sampled_from([None, 1, 3]))
    seed = draw(st.integers(0, 2**16))
    return n, k, labeled, groups, times, gap, quota, seed


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.parametrize("strategy", FAMILIES)
@given(problem=problems())
def test_properties(strategy, problem):
    n, k, labeled, groups, times, gap, quota, seed = problem
    kw = _inputs(strategy, n)
    video = {"groups": groups, "timestamps_ms": times, "min_gap_ms": gap, "max_per_group": quota}
    constrained = gap is not None or quota is not None
    out = select(strategy, k=k, labeled=labeled, seed=seed, **kw, **(video if constrained else {}))
    n_avail = int((~labeled).sum())
    assert out.dtype == np.int64
    assert len(set(out.tolist())) == out.size
    assert not labeled[out].any()
    if not constrained:
        assert out.size == min(k, n_avail)
    else:
        assert out.size <= min(k, n_avail)
        for g in np.unique(groups[out]):
            ts = np.sort(times[out][groups[out] == g])
            if gap:
                assert (np.diff(ts) >= gap).all()
            if quota is not None:
                assert ts.size <= quota
        if out.size < min(k, n_avail):  # maximal: every other available row conflicts
            picked = np.zeros(n, bool)
            picked[out] = True
            for i in np.flatnonzero(~labeled & ~picked):
                same = out[groups[out] == groups[i]]
                full = quota is not None and same.size >= quota
                near = bool(gap) and bool((np.abs(times[same] - times[i]) < gap).any())
                assert full or near
    again = select(
        strategy, k=k, labeled=labeled, seed=seed, **kw, **(video if constrained else {})
    )
    np.testing.assert_array_equal(out, again)


def _public_callables():
    for name in acq.__all__:
        obj = getattr(acq, name)
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj):
            yield name, obj.__init__
    for name in available():
        factory, _ = acq.selection.strategy_registry.entry(name)
        yield name, factory.__init__


@pytest.mark.parametrize("name,fn", list(dict(_public_callables()).items()))
def test_docstrings_cover_arguments(name, fn):
    if fn is object.__init__:
        return
    owner_doc = inspect.getdoc(fn) or ""
    if fn.__name__ == "__init__":
        cls_name = fn.__qualname__.split(".")[0]
        owner_doc += inspect.getdoc(getattr(inspect.getmodule(fn), cls_name)) or ""
    params = [p for p in inspect.signature(fn).parameters if p not in ("self", "args", "kwargs")]
    for p in params:
        assert re.search(rf"\b{re.escape(p)}\b", owner_doc), f"{name}: '{p}' is not documented"


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("strategy", ["topk:bald", "kcenter", "batchbald", "random"])
def test_cuda_matches_cpu(strategy):
    labeled = np.zeros(len(E), bool)
    labeled[:5] = True
    kw = _inputs(strategy, len(E))
    cpu = select(strategy, k=10, labeled=labeled, **kw)
    np.testing.assert_array_equal(select(strategy, k=10, labeled=labeled, device="cuda", **kw), cpu)
    for name in SCORES:
        np.testing.assert_allclose(
            acq.score(name, P, device="cuda"), acq.score(name, P), rtol=1e-5, atol=1e-6
        )
