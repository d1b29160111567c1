"""Greedy BatchBALD, vectorised over the candidates, with lazy evaluation.

The greedy step adds the candidate ``i`` maximising
``I(y_b, y_i; w) - I(y_b; w) = H(y_i | y_b) - E_w H(y_i | w)``. With the
``T`` MC samples as a uniform posterior over ``w``, the batch labels ``y_b``
are represented by configurations ``m`` with weight ``p(y_m)`` and normalised
per-sample likelihoods ``S[m, t] = P_t(y_m) / p(y_m)``, so that

    H(y_i | y_b) = sum_m p(y_m) H(r_{m,i}),   r_{m,i} = (1/T) sum_t S[m, t] p_i[t]

is one matrix product ``S @ p`` for a whole chunk of candidates. All
configurations are enumerated while there are at most ``max_exact_configs``
(exact joint entropy); beyond, ``num_samples`` configurations are sampled per
MC sample as in Kirsch et al. (importance-weighted estimate). The normalised
form never underflows, even for long batches in float32.

The BatchBALD objective is submodular (Kirsch et al. 2019, App. B), so marginal
gains only shrink as the batch grows: a candidate whose previous gain is below
the best fresh gain cannot win (lazy greedy, Minoux 1978). In the exact regime
lazy evaluation returns exactly the plain greedy's picks while scoring a small
share of the candidates per step.

References:
    1. Kirsch, van Amersfoort, Gal. "BatchBALD: Efficient and Diverse Batch
       Acquisition for Deep Bayesian Active Learning". NeurIPS 2019.
    2. Minoux. "Accelerated greedy algorithms for maximizing submodular set
       functions". Optimization Techniques, 1978.
"""

from __future__ import annotations

import numpy as np
import torch

from alray.acquisition._validation import CHUNK_ELEMENTS, check_int
from alray.acquisition.base import Pool, Selector, strategy_registry, top_order
from alray.acquisition.constraints import take_ranked
from alray.acquisition.scores import score

__all__ = ["BatchBaldSelector", "Configurations"]

# Two 31-bit polynomial hashes identify a sampled label vector (collisions ~2^-62).
_HASH_MOD = 2_147_483_647
_HASH_MUL = torch.tensor([1_000_003, 7_654_321], dtype=torch.int64)


class Configurations:
    """Weighted label configurations of the batch so far.

    Args:
        t: Number of MC samples ``T``.
        device: Torch device.
        max_exact_configs: Enumerate configurations while at most this many.
        num_samples: Configurations kept once sampling (rounded up to a multiple of ``T``).
        rng: Random generator for sampling configurations.
    """

    def __init__(
        self,
        t: int,
        device: torch.device,
        max_exact_configs: int,
        num_samples: int,
        rng: np.random.Generator,
    ) -> None:
        self.t = t
        self.s = torch.ones((1, t), dtype=torch.float32, device=device)  # [M, T], row mean 1
        self.w = torch.ones(1, dtype=torch.float64, device=device)  # [M], sums to 1
        self.max_exact = max_exact_configs
        self.num_samples = -(-num_samples // t) * t
        self.rng = rng
        self.model: torch.Tensor | None = None  # [M] MC sample each sampled config came from
        self.key: torch.Tensor | None = None  # [M, 2] hashes of each sampled label vector
        self._distinct: tuple[torch.Tensor, torch.Tensor] | None = None
        self.exact = True

    def conditional_entropy(self, p: torch.Tensor) -> torch.Tensor:
        """``H(y_i | y_b)`` for a chunk of candidates.

        Args:
            p: ``float32[b, T, C]`` candidate probabilities.

        Returns:
            ``float64[b]`` conditional entropies (nats).
        """
        b, t, c = p.shape
        s, w = self.distinct()
        r = (s @ p.permute(1, 0, 2).reshape(t, b * c)).div_(t)  # [M', b*C]
        h = -torch.special.xlogy(r, r).view(-1, b, c).sum(dim=2)  # [M', b]
        return w @ h.double()

    def distinct(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Distinct configurations with merged weights (sampled ones often repeat).

        Returns:
            ``(S [M', T], w [M'])``.
        """
        if self.exact:
            return self.s, self.w
        if self._distinct is None:
            key = self.key[:, 0] * (1 << 31) + self.key[:, 1]
            uniq, inverse = torch.unique(key, return_inverse=True)
            first = torch.full((uniq.numel(),), key.numel(), dtype=torch.int64, device=key.device)
            first.scatter_reduce_(0, inverse, torch.arange(key.numel(), device=key.device), "amin")
            w = torch.zeros(uniq.numel(), dtype=torch.float64, device=key.device)
            w.index_add_(0, inverse, self.w)
            self._distinct = (self.s[first], w)
        return self._distinct

    def add(self, p: torch.Tensor) -> None:
        """Append one picked variable.

        Args:
            p: ``float32[T, C]`` probabilities of the picked row.
        """
        c = p.shape[1]
        if self.exact and self.s.shape[0] * c > self.max_exact:
            self._to_sampled()
        if self.exact:
            s = self.s[:, None, :] * p.T[None, :, :]  # [M, C, T]
            r = s.mean(dim=2)  # [M, C]
            w = (self.w[:, None] * r.double()).reshape(-1)
            keep = w > 0
            self.s = (s / r[..., None].clamp_min(1e-38)).reshape(-1, self.t)[keep]
            self.w = w[keep] / w[keep].sum()
            return
        rows = p[self.model]  # [M, C], each config's own MC sample
        cum = rows.double().cumsum(dim=1)
        u = torch.from_numpy(self.rng.random(rows.shape[0])).to(cum.device)
        y = (cum < (u * cum[:, -1])[:, None]).sum(dim=1).clamp_max(c - 1)  # [M]
        like = p.T[y]  # [M, T]: p_t(y_m) for every t
        self.key = (self.key * _HASH_MUL + y[:, None] + 1) % _HASH_MOD
        self._distinct = None
        s = self.s * like
        self.s = s / s.mean(dim=1, keepdim=True).clamp_min(1e-38)

    def _to_sampled(self) -> None:
        """Draw ``num_samples`` configurations, the same number from each MC sample."""
        m, t = self.s.shape
        joint = (self.w[:, None] * self.s.double()).T  # [T, M]: P_t(y_m), rows sum to 1
        cum = joint.cumsum(dim=1)
        cum = cum / cum[:, -1:]
        model = torch.arange(self.num_samples, device=cum.device) % t
        u = torch.from_numpy(self.rng.random(self.num_samples)).to(cum.device)
        flat = (cum + torch.arange(t, device=cum.device, dtype=torch.float64)[:, None]).reshape(-1)
        idx = torch.searchsorted(flat, model.double() + u, right=True) - model * m
        idx = idx.clamp(0, m - 1)
        self.s = self.s[idx]
        self.w = torch.full(
            (self.num_samples,), 1.0 / self.num_samples, dtype=torch.float64, device=cum.device
        )
        self.model = model
        self.key = torch.stack([idx, idx], dim=1) % _HASH_MOD  # exact configs are distinct
        self._distinct = None
        self.exact = False


@strategy_registry.register("batchbald")
class BatchBaldSelector(Selector):
    """Greedy BatchBALD on MC probabilities ``[N, T, C]``.

    Args:
        num_candidates: Only the top-``M`` available rows by BALD are considered
            (default ``10 * k``); pass ``M >= N`` to consider every row.
        max_exact_configs: Joint entropies are exact while the batch has at most
            this many label configurations (``C^n``), sampled beyond.
        num_samples: Sampled configurations in the sampled regime.
        lazy: Lazy greedy evaluation (exact in the exact regime, see module doc).
            ``False`` scores every candidate at every step.
    """

    requires = frozenset({"probs"})

    def __init__(
        self,
        num_candidates: int | None = None,
        max_exact_configs: int = 2048,
        num_samples: int = 2000,
        lazy: bool = True,
    ) -> None:
        self.num_candidates = (
            None
            if num_candidates is None
            else check_int(num_candidates, "num_candidates", min_value=1)
        )
        self.max_exact = check_int(max_exact_configs, "max_exact_configs", min_value=1)
        self.num_samples = check_int(num_samples, "num_samples", min_value=1)
        self.lazy = bool(lazy)

    def select(self, pool: Pool) -> np.ndarray:
        dev = pool.device
        bald = score("bald", pool.probs, device=dev).astype(np.float64)
        rows = np.flatnonzero(pool.available)
        m = self.num_candidates or 10 * pool.k
        cand = np.sort(top_order(bald[rows], rows, m))  # ascending rows: ties go to lower rows
        p = pool.probs[torch.from_numpy(cand)].to(dev, torch.float32)  # [M, T, C]
        condent = (score("entropy", p, device=dev) - score("bald", p, device=dev)).astype(
            np.float64
        )
        gains = bald[cand].copy()  # exact gains of the first step; upper bounds after
        valid = np.ones(cand.size, dtype=bool)
        configs = Configurations(p.shape[1], dev, self.max_exact, self.num_samples, pool.rng(4))
        step = max(1, CHUNK_ELEMENTS // (max(self.max_exact, configs.num_samples) * p.shape[2]))
        target = min(pool.k, pool.n_available)
        picks: list[int] = []

        def evaluate(idx: np.ndarray) -> None:
            for s in range(0, idx.size, step):
                part = idx[s : s + step]
                h = configs.conditional_entropy(p[torch.from_numpy(part).to(dev)])
                gains[part] = h.cpu().numpy() - condent[part]

        while len(picks) < target and valid.any():
            if picks:
                if self.lazy:
                    self._lazy_refresh(gains, valid, evaluate)
                else:
                    evaluate(np.flatnonzero(valid))
            best = np.flatnonzero(valid)[np.argmax(gains[valid])]
            row = int(cand[best])
            picks.append(row)
            configs.add(p[best])
            valid[best] = False
            if pool.constraint is not None:
                pool.constraint.pick(row)
                valid &= ~pool.constraint.blocked[cand]
        if len(picks) < target:  # candidates ran out (video constraint): fill by BALD
            left = pool.available.copy()
            left[picks] = False
            order = top_order(bald[np.flatnonzero(left)], np.flatnonzero(left), None)
            more = take_ranked(order, target - len(picks), pool.constraint, left, fill=False)
            picks.extend(more.tolist())
        return np.asarray(picks, dtype=np.int64)

    @staticmethod
    def _lazy_refresh(gains: np.ndarray, valid: np.ndarray, evaluate) -> None:
        """Re-score candidates by descending stale gain until no stale one can win."""
        fresh = np.zeros(valid.size, dtype=bool)
        batch = 16
        while True:
            stale = np.flatnonzero(valid & ~fresh)
            if stale.size == 0:
                return
            done = valid & fresh
            best = gains[done].max() if done.any() else -np.inf
            top_stale = gains[stale].max()
            if best > top_stale + 1e-6 * max(1.0, abs(best)):
                # stale rows tied with the best could win on a lower index: they were re-scored
                return
            order = stale[np.argsort(-gains[stale], kind="stable")[:batch]]
            evaluate(order)
            fresh[order] = True
            batch = min(batch * 2, 1024)
