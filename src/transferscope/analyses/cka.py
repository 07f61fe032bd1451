"""Feature similarity by linear CKA (Kornblith et al. 2019), full-data and minibatch (Nguyen et al. 2021).

Two layers, as torchmetrics' functional / class split:

* maths kernels on tensors: :func:`linear_cka` (centred features, computed in feature space when p, q < n,
  else through Gram matrices), :func:`hsic1` (the unbiased estimator on one minibatch);
* a streaming accumulator, :class:`LinearCKAAccumulator`, whose memory stops growing with the number of
  examples: for the full-data estimate it holds the rows while they are smaller than the sums ``X^T Y``,
  ``X^T X``, ``Y^T Y`` (p x q, p x p, q x q) and streams those sums after; it keeps running means of HSIC_1
  over fixed-size minibatches (the last partial batch is dropped);
* :func:`feature_similarity` over two models and data, which never changes the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..devices import model_device
from ..models import to_input
from ..vocab.results import CKAResult

__all__ = ["linear_cka", "hsic1", "minibatch_cka", "LinearCKAAccumulator", "CKAResult", "feature_similarity", "CKASide",
           "cka_side", "cka_of_sides"]


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).to(torch.float64)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Linear CKA of two feature matrices over the same n examples (biased, full-data estimator).

    Args:
        x: (n, p) or (n, ...) features; flattened per example.
        y: (n, q) or (n, ...).

    Returns:
        A scalar tensor in [0, 1]: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on centred features.
        NaN if either side has no variance.
    """
    x, y = _flat(x), _flat(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka: x has {x.shape[0]} examples and y has {y.shape[0]}")
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    if p * q <= n * n:  # feature space: p x q instead of n x n
        num = (y.T @ x).pow(2).sum()
        den = (x.T @ x).norm() * (y.T @ y).norm()
    else:
        kx, ky = x @ x.T, y @ y.T
        num = (kx * ky).sum()
        den = kx.norm() * ky.norm()
    return num / den if den > 0 else x.new_tensor(float("nan"))


def _held_cka(x: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """:func:`linear_cka` of held float32 rows without float64 copies of them (the rows are not changed): chunks
    are centred and cast on the fly, and accumulated in float64 into the feature-space products (p x q, p x p,
    q x q; time n (p^2 + q^2 + pq)) or Gram blocks (chunk x n at a time; time n^2 (p + q)), whichever is faster.
    Peak memory: the rows plus the feature-space sums or a few chunk x n blocks."""
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    mx = sum(x[i : i + chunk].double().sum(0) for i in range(0, n, chunk)) / n
    my = sum(y[i : i + chunk].double().sum(0) for i in range(0, n, chunk)) / n

    def cx(i: int) -> torch.Tensor:
        return x[i : i + chunk].double() - mx

    def cy(i: int) -> torch.Tensor:
        return y[i : i + chunk].double() - my

    f64 = {"dtype": torch.float64, "device": x.device}
    nan = torch.tensor(float("nan"), **f64)
    if p * q + p * p + q * q <= n * (p + q):
        sxy = torch.zeros(p, q, **f64)
        sxx = torch.zeros(p, p, **f64)
        syy = torch.zeros(q, q, **f64)
        for i in range(0, n, chunk):
            xc, yc = cx(i), cy(i)
            sxy += xc.T @ yc
            sxx += xc.T @ xc
            syy += yc.T @ yc
        den = sxx.norm() * syy.norm()
        return sxy.pow(2).sum() / den if den > 0 else nan
    num = kk = ll = torch.zeros((), **f64)
    for i in range(0, n, chunk):
        xi, yi = cx(i), cy(i)
        kx = torch.cat([xi @ cx(j).T for j in range(0, n, chunk)], 1)
        ky = torch.cat([yi @ cy(j).T for j in range(0, n, chunk)], 1)
        num = num + (kx * ky).sum()
        kk = kk + kx.pow(2).sum()
        ll = ll + ky.pow(2).sum()
    den = torch.sqrt(kk * ll)
    return num / den if den > 0 else nan


def hsic1(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """The unbiased HSIC estimator of Song et al. (2012) on one minibatch of m > 3 examples.

    HSIC_1(K, L) = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((m-1)(m-2)) - 2/(m-2) 1^T K~ L~ 1] / (m (m-3)),
    where K~, L~ are the Gram matrices K, L (m x m) with zeroed diagonals.
    """
    m = k.shape[0]
    if m < 4:
        raise ValueError(f"hsic1 needs at least 4 examples per minibatch, got {m}")
    k = k.clone()
    l = l.clone()
    k.fill_diagonal_(0)
    l.fill_diagonal_(0)
    ones_k = k.sum(0)  # 1^T K~ (m,)
    ones_l = l.sum(1)  # L~ 1 (m,)
    trace = (k * l.T).sum()
    middle = ones_k.sum() * ones_l.sum() / ((m - 1) * (m - 2))
    last = 2.0 / (m - 2) * (ones_k @ ones_l)
    return (trace + middle - last) / (m * (m - 3))


def minibatch_cka(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Minibatch linear CKA of features already in memory (a reference for the streaming accumulator)."""
    acc = LinearCKAAccumulator(batch_size)
    acc.update(x, y)
    return acc.compute()["minibatch"]


@dataclass
class LinearCKAAccumulator:
    """Streams (x, y) feature batches; computes full-data and minibatch linear CKA at the end.

    Full-data estimate: the rows are kept (float32) while they are smaller than a quarter of the feature-space sums
    ``X^T Y``, ``X^T X``, ``Y^T Y`` (float64, (pq + p^2 + q^2) x 8 bytes); past that they are folded into those sums
    and streamed. So its memory is at most 1.25 x (pq + p^2 + q^2) x 8 bytes whatever n (for small n, the rows
    only); for wide conv maps, pass ``full=False`` to keep only the minibatch estimate. (Rows given in float64
    are held in float64: 1.5 x at most.)
    Minibatch estimate: O(m^2 + m (p + q)). Batches given to :meth:`update` may have any size: they are regrouped
    into minibatches of exactly ``batch_size`` for HSIC_1, and the last partial one is dropped.

    Every row is shifted by the first batch's column means (in float64) before it is held, summed or used in a
    minibatch: both estimates are invariant to a shift of the features (the full-data one centres, HSIC_1 is
    unchanged by it), and the one-pass covariance X^T X - s s^T / n would otherwise lose its digits to
    cancellation when the features have a large mean (relative error 1e-4 at a mean of 1e5), as would the
    float32 rows held.
    """

    batch_size: int = 256
    full: bool = True
    n: int = 0
    _sx: torch.Tensor | None = None
    _sy: torch.Tensor | None = None
    _sxy: torch.Tensor | None = None
    _sxx: torch.Tensor | None = None
    _syy: torch.Tensor | None = None
    _hx: list = field(default_factory=list)
    _hy: list = field(default_factory=list)
    _hsic: torch.Tensor | None = None  # on the features' device, from the first minibatch
    _batches: int = 0
    _px: list = field(default_factory=list)
    _py: list = field(default_factory=list)
    _mx: torch.Tensor | None = None
    _my: torch.Tensor | None = None

    @property
    def streaming(self) -> bool:
        """True once the full-data estimate is kept as feature-space sums (rows no longer held)."""
        return self._sx is not None

    def _fold(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = _flat(x), _flat(y)
        if self._sx is None:
            self._sx, self._sy = x.new_zeros(x.shape[1]), y.new_zeros(y.shape[1])
            self._sxy = x.new_zeros(x.shape[1], y.shape[1])
            self._sxx, self._syy = x.new_zeros(x.shape[1], x.shape[1]), y.new_zeros(y.shape[1], y.shape[1])
        self._sx += x.sum(0)
        self._sy += y.sum(0)
        self._sxy += x.T @ y
        self._sxx += x.T @ x
        self._syy += y.T @ y

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.detach().reshape(x.shape[0], -1), y.detach().reshape(y.shape[0], -1)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"CKA update: x has {x.shape[0]} examples and y has {y.shape[0]}")
        if x.shape[0] == 0:
            return
        # rows are held as float32 (model features), or as float64 when given in float64
        hold = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
        if self._mx is None:  # the first batch's column means: the shift of every row (see the class docstring)
            self._mx, self._my = _flat(x).mean(0), _flat(y).mean(0)
        x, y = _flat(x) - self._mx, _flat(y) - self._my
        if self.full:
            if self.streaming:
                self._fold(x, y)
            else:
                self._hx.append(x.to(hold))
                self._hy.append(y.to(hold))
                p, q = x.shape[1], y.shape[1]
                # rows past a quarter of the sums' size (float64; rows in float32): fold them in, so that the peak
                # (rows + sums, at the switch or in the final computation) stays within 1.25x the sums
                if (self.n + x.shape[0]) * (p + q) * 4 * 4 >= (p * q + p * p + q * q) * 8:
                    for hx, hy in zip(self._hx, self._hy, strict=True):
                        self._fold(hx, hy)
                    self._hx, self._hy = [], []
        self.n += x.shape[0]
        if self.batch_size:
            self._px.append(x)
            self._py.append(y)
            have = sum(len(a) for a in self._px)
            if have >= self.batch_size:
                px, py = torch.cat(self._px), torch.cat(self._py)
                cut = have - have % self.batch_size
                for i in range(0, cut, self.batch_size):
                    self._add_minibatch(px[i : i + self.batch_size], py[i : i + self.batch_size])
                self._px, self._py = [px[cut:]], [py[cut:]]

    def _add_minibatch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        k, l = x @ x.T, y @ y.T
        h = torch.stack([hsic1(k, l), hsic1(k, k), hsic1(l, l)]).double()
        self._hsic = h if self._hsic is None else self._hsic + h
        self._batches += 1

    def compute(self) -> dict[str, torch.Tensor]:
        """``full``: the full-data (biased) CKA; ``minibatch``: mean HSIC_1(K,L) / sqrt(mean HSIC_1(K,K) mean HSIC_1(L,L)).

        A value is NaN when it cannot be estimated (no variance; no complete minibatch; a negative HSIC_1(K,K)
        estimate, which small minibatches can give).
        """
        nan = torch.tensor(float("nan"), dtype=torch.float64, device="cpu")
        out = {"full": nan, "minibatch": nan}
        if self.full and self.n > 1 and not self.streaming:
            self._hx, self._hy = [torch.cat(self._hx)], [torch.cat(self._hy)]  # one copy of the rows, not two
            out["full"] = _held_cka(self._hx[0], self._hy[0])
        elif self.full and self.n > 1:
            n = self.n
            cxy = self._sxy - torch.outer(self._sx, self._sy) / n
            cxx = self._sxx - torch.outer(self._sx, self._sx) / n
            cyy = self._syy - torch.outer(self._sy, self._sy) / n
            den = cxx.norm() * cyy.norm()
            out["full"] = cxy.pow(2).sum() / den if den > 0 else nan
        if self._batches:
            kl, kk, ll = self._hsic / self._batches
            if kk > 0 and ll > 0:
                out["minibatch"] = kl / torch.sqrt(kk * ll)
        return out


@dataclass
class _Layer:
    """One model's side of one layer's CKA: what every pair the model is part of reads (see :class:`CKASide`)."""

    p: int
    grams: list[torch.Tensor] = field(default_factory=list)
    """Held path: the centred Gram matrix in row blocks (float64), as :func:`_held_cka` forms it."""
    gram_sq: torch.Tensor | None = None
    """Held path: the sum of its squares, accumulated block by block as :func:`_held_cka` does."""
    minis: list[torch.Tensor] = field(default_factory=list)
    """Held path: the Gram matrix of each complete minibatch (float64)."""
    chunks: list[torch.Tensor] = field(default_factory=list)
    """Other layers (narrow: the pair's feature-space sums are cheap): the raw features of each pass, replayed
    into a :class:`LinearCKAAccumulator` per pair."""


@dataclass
class CKASide:
    """One model's features on a set of images, reduced to what linear CKA with any other model reads, so that a
    model compared with k others is passed over the images once and its Gram matrices formed once, not k times.

    Per layer, where the pair's full-data estimate keeps the rows and goes through Gram matrices (n < 3p / 4 for
    p features per example, as :class:`LinearCKAAccumulator` decides for two models of one architecture): the
    centred Gram matrix in the row blocks of :func:`_held_cka` and the minibatches' Gram matrices; elsewhere the
    raw features. :func:`cka_of_sides` combines two sides with exactly the operations of the accumulator, so
    the result is bitwise the pair's computed from the models (:func:`feature_similarity`). Memory: about
    8 n^2 bytes per wide layer (n^2 / 4 to n^2 for the minibatches' part) and 4 n p per narrow one."""

    layers: list[str]
    n: int
    batch_size: int
    chunk: int
    full: bool
    by_layer: dict[str, _Layer]


def _held(n: int, p: int) -> bool:
    """Whether the accumulator of two models with p features each keeps n rows to the end (never streams)."""
    return n * (2 * p) * 4 * 4 < (3 * p * p) * 8


@torch.no_grad()
def cka_side(model: nn.Module, images: torch.Tensor, *, layers: Sequence[str], batch_size: int = 256,
             chunk: int = 512, full: bool = True) -> CKASide:
    """``model``'s :class:`CKASide` on ``images`` (uint8 (N, C, H, W), or floats already scaled as by
    ``to_input``), in eval mode for the pass (given back in the mode it was in)."""
    layers = list(layers)
    dev = model_device(model)
    mode = model.training
    model.eval()
    raw: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    try:
        for i in range(0, len(images), chunk):
            xb = images[i : i + chunk].to(dev)
            xb = to_input(xb) if xb.dtype == torch.uint8 else xb
            f = model.features(xb, layers)
            for name in layers:
                raw[name].append(f[name].detach().reshape(f[name].shape[0], -1))
    finally:
        model.train(mode)
    n = len(images)
    by_layer = {}
    for name in layers:
        p = raw[name][0].shape[1] if raw[name] else 0
        lay = _Layer(p)
        if raw[name] and raw[name][0].dtype != torch.float64 and _held(n, p):
            _reduce(lay, raw[name], n, batch_size, full)
        else:
            lay.chunks = raw[name]
        by_layer[name] = lay
    return CKASide(layers, n, batch_size, chunk, full, by_layer)


def _reduce(lay: _Layer, chunks: list[torch.Tensor], n: int, batch_size: int, full: bool) -> None:
    """One side of the accumulator's held path, operation for operation: rows shifted by the first pass's means
    (float64) and held as float32; the Gram matrix of :func:`_held_cka`; the minibatches' Gram matrices."""
    shift = _flat(chunks[0]).mean(0)
    rows = [_flat(c) - shift for c in chunks]
    if full and n > 1:
        x = torch.cat([r.to(torch.float32) for r in rows])
        block = 1024  # _held_cka's chunk
        mx = sum(x[i : i + block].double().sum(0) for i in range(0, n, block)) / n

        def cx(i: int) -> torch.Tensor:
            return x[i : i + block].double() - mx

        sq = torch.zeros((), dtype=torch.float64, device=x.device)
        for i in range(0, n, block):
            xi = cx(i)
            k = torch.cat([xi @ cx(j).T for j in range(0, n, block)], 1)
            lay.grams.append(k)
            sq = sq + k.pow(2).sum()
        lay.gram_sq = sq
    if batch_size:
        pending: list[torch.Tensor] = []
        for r in rows:  # regrouped into minibatches of exactly batch_size, as LinearCKAAccumulator.update does
            pending.append(r)
            have = sum(len(a) for a in pending)
            if have >= batch_size:
                px = torch.cat(pending)
                cut = have - have % batch_size
                lay.minis += [px[i : i + batch_size] @ px[i : i + batch_size].T for i in range(0, cut, batch_size)]
                pending = [px[cut:]]


def cka_of_sides(a: CKASide, b: CKASide) -> CKAResult:
    """Linear CKA per layer of the two models whose sides these are, on the same images: bitwise what
    :func:`feature_similarity` gives for the two models.

    Raises:
        ValueError: the sides are of other images, layers or settings."""
    if (a.layers, a.n, a.batch_size, a.chunk, a.full) != (b.layers, b.n, b.batch_size, b.chunk, b.full):
        raise ValueError("cka_of_sides: the two sides were computed with other layers, images or settings")
    full, mini, batches = [], [], []
    for name in a.layers:
        la, lb = a.by_layer[name], b.by_layer[name]
        if la.chunks or lb.chunks or la.p != lb.p:  # a narrow layer (or two widths): the accumulator, replayed
            acc = LinearCKAAccumulator(a.batch_size, full=a.full)
            for xa, xb in zip(_chunks(la), _chunks(lb), strict=True):
                acc.update(xa, xb)
            r = acc.compute()
            full.append(float(r["full"]))
            mini.append(float(r["minibatch"]))
            batches.append(acc._batches)
            continue
        f, m, nb = _held_pair(la, lb, a.n, a.full)
        full.append(f)
        mini.append(m)
        batches.append(nb)
    return CKAResult(a.layers, full, mini, a.batch_size, a.n, batches[0] if batches else 0,
                     args={"layers": a.layers, "batch_size": a.batch_size, "chunk": a.chunk, "full": a.full})


def _chunks(lay: _Layer) -> list[torch.Tensor]:
    if not lay.chunks:
        raise ValueError("cka_of_sides: a layer reduced on one side is raw on the other (other widths)")
    return lay.chunks


def _held_pair(la: _Layer, lb: _Layer, n: int, full: bool) -> tuple[float, float, int]:
    """The full-data and minibatch CKA of one wide layer from two reduced sides (the operations of
    :func:`_held_cka` and :meth:`LinearCKAAccumulator.compute`)."""
    f64 = {"dtype": torch.float64, "device": "cpu"}
    out_full = float("nan")
    if full and n > 1:
        num = torch.zeros((), dtype=torch.float64, device=la.grams[0].device)
        for kx, ky in zip(la.grams, lb.grams, strict=True):
            num = num + (kx * ky).sum()
        den = torch.sqrt(la.gram_sq * lb.gram_sq)
        out_full = float(num / den) if den > 0 else float("nan")
    hsic = None
    for k, l in zip(la.minis, lb.minis, strict=True):
        h = torch.stack([hsic1(k, l), hsic1(k, k), hsic1(l, l)]).double()
        hsic = h if hsic is None else hsic + h
    out_mini = torch.tensor(float("nan"), **f64)
    if la.minis:
        kl, kk, ll = hsic / len(la.minis)
        if kk > 0 and ll > 0:
            out_mini = kl / torch.sqrt(kk * ll)
    return out_full, float(out_mini), len(la.minis)


def feature_similarity(model_a: nn.Module, model_b: nn.Module, images: torch.Tensor, *, layers: Sequence[str],
                       batch_size: int = 256, chunk: int = 512, full: bool = True) -> CKAResult:
    """Linear CKA between the same-named layers of two models on the same images.

    Args:
        model_a, model_b: models with ``features(x, layers)`` (see :class:`transferscope.models.ResNet`).
        images: uint8 images (N, C, H, W) (or floats already scaled as by ``to_input``).
        layers: layer names, e.g. ``model_a.layer_names()``; an unknown name raises and lists the valid ones.
        batch_size: minibatch size m of the minibatch estimator (the last partial minibatch is dropped).
        chunk: how many images go through the models at a time (memory only; results do not depend on it).
        full: also compute the full-data estimate (memory: see :class:`LinearCKAAccumulator`).

    The models are put in eval mode for the pass and given back in the mode they were in. The same as
    :func:`cka_of_sides` of the two models' :func:`cka_side` (the form in which a study's pair analysis computes
    each model's side once for all its pairs).
    """
    kw = {"layers": list(layers), "batch_size": batch_size, "chunk": chunk, "full": full}
    return cka_of_sides(cka_side(model_a, images, **kw), cka_side(model_b, images, **kw))
