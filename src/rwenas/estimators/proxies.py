"""Zero-cost proxies and trivial baselines behind the :class:`~rwenas.estimators.base.Estimator`
interface, plus an adapter around Random-Weight Evaluation.

The proxies follow their papers (and the reference code of those papers):

* Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021): ``synflow``,
  ``grasp``, ``fisher``, ``snip``, ``grad_norm``. Per-weight scores are taken for the weights
  of every convolution and linear layer (not biases, not BatchNorm) and summed.
* Mellor et al., "Neural Architecture Search without Training" (ICML 2021): ``jacob_cov``
  (the score of the paper's first version) and ``naswot`` (the second version's score).

Every proxy is "higher is better" in its paper; ``Score.raw`` keeps it as defined there and
``Score.value = -raw`` is the lower-is-better value used for ranking. NaN/inf gives
``value = +inf`` with a ``RuntimeWarning``.

How each one is computed (``x``, ``y``: a minibatch of ``batch_size`` training images drawn
with a ``torch.Generator`` seeded by ``seed``; the loss is mean softmax cross-entropy):

``synflow``  BatchNorm removed (replaced by identity, as the paper's code builds the network
    with ``bn=False``); float64; every parameter replaced by its absolute value (signs saved
    and restored afterwards); input a single all-ones image of the data's shape;
    ``R = sum(f(1))``; raw = Σ over weights |θ ⊙ ∂R/∂θ|.
``snip``     train mode (BatchNorm uses batch statistics); raw = Σ |θ ⊙ ∂L/∂θ|.
``grad_norm`` train mode; raw = Σ over weight tensors of ‖∂L/∂θ‖₂.
``grasp``    train mode; g = ∂L/∂θ, Hg by double back-propagation (∂(gᵀ·stop_grad(g))/∂θ);
    raw = Σ (−θ ⊙ Hg).
``fisher``   train mode; at the output a of every convolution and linear layer (per call),
    with its gradient ∂L/∂a, each output channel k scores
    F_k = ½ · mean over the batch of (Σ over spatial positions of a ⊙ ∂L/∂a)²_k; as in the
    reference code (SamsungLabs zero-cost-nas), that channel score is given to every weight
    of the channel and the weights are summed, so raw = Σ over layers of
    fan_in · Σ_k F_k, where fan_in = the number of weights per output channel
    (in_channels/groups × kernel size for a convolution, in_features for a linear layer).
``jacob_cov`` train mode; J_i = ∂(Σ_c f(x)_c)/∂x_i flattened per sample; Σ = the correlation
    matrix of the J_i (``numpy.corrcoef``), λ its eigenvalues;
    raw = −Σ (log(λ + 1e-5) + 1/(λ + 1e-5)).
``naswot``   train mode, no gradients; binary code c of every ReLU (ReLU6) application
    (``relu(h) > 0`` per unit, functional ReLUs included); K = Σ over ReLUs of
    c cᵀ + (1−c)(1−c)ᵀ (= N_A − Hamming distance); raw = log|det K|. ReLUs are counted as
    the network is written and as the reference code (Mellor et al.) counts them: one per
    operation reading a state, each with its own ReLU. The micro cells' shared-ReLU speed
    optimisation (one ``relu(state)`` for all its readers) is switched off while scoring
    (:func:`rwenas.models.ops.unshared_relus`). One difference is kept on purpose: the
    reference hooks every module whose type name contains "ReLU" and records the code of its
    *input*, so a module class named e.g. ``ReLUConvBN`` (whose inner ``nn.ReLU`` is hooked
    as well) adds the same code twice; rwenas counts ReLU applications (``nn.ReLU``,
    ``nn.ReLU6``, functional ReLUs) only, so a cell's preprocessing counts once.
``params`` / ``madds`` raw = the parameter count / multiply-adds of one image
    (:mod:`rwenas.complexity`); as accuracy baselines a larger network is predicted better,
    so value = −raw.
``rwe``      :func:`rwenas.estimators.rwe.rwe`; raw = value = the RWE error (lower is better).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from rwenas.complexity import count_madds, count_params
from rwenas.data import Split
from rwenas.device import resolve_device
from rwenas.errors import ConfigError
from rwenas.estimators.base import Score, build_network, draw_batch, make_score
from rwenas.estimators.rwe import RWEConfig, rwe
from rwenas.models.ops import unshared_relus

__all__ = [
    "ESTIMATORS",
    "NASWOT",
    "SNIP",
    "Fisher",
    "GraSP",
    "GradNorm",
    "JacobCov",
    "MAdds",
    "Params",
    "ProxyEstimator",
    "RWEEstimator",
    "ReLUCodes",
    "SynFlow",
    "bypass_batchnorm",
    "fisher_score",
    "grad_norm_score",
    "grasp_score",
    "hessian_gradient_products",
    "jacob_cov_score",
    "jacobian_correlation_score",
    "make_estimator",
    "naswot_kernel",
    "naswot_score",
    "prunable_layers",
    "snip_score",
    "synflow_score",
]

JACOB_COV_EPS = 1e-5


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def prunable_layers(net: nn.Module) -> list[nn.Module]:
    """Convolutions and linear layers of ``net`` (the auxiliary head excluded), in module
    order: the layers whose weights the per-weight proxies score."""
    aux = getattr(net, "auxiliary_head", None)
    skip = {id(m) for m in aux.modules()} if isinstance(aux, nn.Module) else set()
    return [m for m in net.modules()
            if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and id(m) not in skip]


def _weights(net: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in prunable_layers(net)]


def _prepare(net: nn.Module, train: bool) -> nn.Module:
    net.train(train)
    if hasattr(net, "drop_path_prob"):
        net.drop_path_prob = 0.0  # no random path dropping while scoring
    for p in net.parameters():
        p.requires_grad_(True)
        p.grad = None
    return net


def _ce_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(net(x), y)


def bypass_batchnorm(net: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer of ``net`` by an identity (in place); returns ``net``."""
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, nn.Identity())
    return net


# --------------------------------------------------------------------------------------------
# the proxies as functions of a network and a batch
# --------------------------------------------------------------------------------------------


def synflow_score(net: nn.Module, input_shape: Sequence[int],
                  device: torch.device | str = "cpu") -> float:
    """SynFlow (BatchNorm bypassed, float64, |θ|, all-ones input): Σ |θ ⊙ ∂R/∂θ|, R = Σ f(1).

    Modifies ``net``: BatchNorm is replaced by identities and it is left in float64 (the
    parameter signs are restored)."""
    net = _prepare(bypass_batchnorm(net), train=False).to(device=device, dtype=torch.float64)
    params = list(net.parameters())
    with torch.no_grad():
        signs = [torch.sign(p) for p in params]
        for p in params:
            p.abs_()
    try:
        weights = _weights(net)
        x = torch.ones(1, *input_shape, dtype=torch.float64, device=device)
        r = net(x).sum()
        grads = torch.autograd.grad(r, weights, allow_unused=True)
        total = sum(float((w.detach() * g).abs().sum())
                    for w, g in zip(weights, grads, strict=True) if g is not None)
    finally:
        with torch.no_grad():
            for p, s in zip(params, signs, strict=True):
                p.mul_(s)
    return float(total)


def snip_score(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """SNIP (train mode): Σ over weights of |θ ⊙ ∂L/∂θ|."""
    net = _prepare(net, train=True)
    weights = _weights(net)
    grads = torch.autograd.grad(_ce_loss(net, x, y), weights, allow_unused=True)
    return float(sum(float((w.detach() * g).abs().sum())
                     for w, g in zip(weights, grads, strict=True) if g is not None))


def grad_norm_score(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """grad_norm (train mode): Σ over weight tensors of the L2 norm of ∂L/∂θ."""
    net = _prepare(net, train=True)
    weights = _weights(net)
    grads = torch.autograd.grad(_ce_loss(net, x, y), weights, allow_unused=True)
    return float(sum(float(g.norm()) for g in grads if g is not None))


def hessian_gradient_products(loss: torch.Tensor, weights: Sequence[torch.Tensor]
                              ) -> list[torch.Tensor]:
    """H g for each weight tensor, where g = ∂loss/∂θ and H the Hessian of ``loss``, by double
    back-propagation: Hg = ∂(gᵀ·stop_gradient(g))/∂θ. Unused weights get zeros."""
    weights = list(weights)
    grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
    z = None
    for g in grads:
        if g is not None:
            term = (g.detach() * g).sum()
            z = term if z is None else z + term
    if z is None or not z.requires_grad:
        return [torch.zeros_like(w) for w in weights]
    hg = torch.autograd.grad(z, weights, allow_unused=True)
    return [torch.zeros_like(w) if h is None else h for w, h in zip(weights, hg, strict=True)]


def grasp_score(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """GraSP (train mode): Σ over weights of −θ ⊙ (H g)."""
    net = _prepare(net, train=True)
    weights = _weights(net)
    hg = hessian_gradient_products(_ce_loss(net, x, y), weights)
    return float(sum(float((-w.detach() * h).sum()) for w, h in zip(weights, hg, strict=True)))


def fisher_score(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fisher (train mode), as the zero-cost reference sums it: Σ over conv/linear layers
    of fan_in · Σ_k F_k, F_k = ½ · mean_n (Σ_spatial a ⊙ ∂L/∂a)²_{n,k} at the layer's
    output ``a`` (per call), fan_in = the layer's weights per output channel."""
    net = _prepare(net, train=True)
    acts: list[torch.Tensor] = []
    fan_ins: list[int] = []

    def hook(module: nn.Module, inputs: Any, out: torch.Tensor) -> torch.Tensor:
        acts.append(out)
        fan_ins.append(module.weight[0].numel())
        return out.clone()  # the rest of the network (in-place ops too) sees a copy

    handles = [m.register_forward_hook(hook) for m in prunable_layers(net)]
    try:
        loss = _ce_loss(net, x, y)
    finally:
        for h in handles:
            h.remove()
    if not acts:
        return 0.0
    grads = torch.autograd.grad(loss, acts, allow_unused=True)
    total = 0.0
    for a, g, fan_in in zip(acts, grads, fan_ins, strict=True):
        if g is None:
            continue
        prod = a.detach() * g
        g_nk = prod.sum(tuple(range(2, prod.dim()))) if prod.dim() > 2 else prod
        # the reference gives each channel's score to each of its fan_in weights, then sums
        total += fan_in * float(g_nk.pow(2).mean(0).mul(0.5).sum())
    return total


def jacobian_correlation_score(jacobians: torch.Tensor | np.ndarray) -> float:
    """Score of Mellor et al. (v1) of per-sample Jacobians (N × D): with λ the eigenvalues of
    their correlation matrix, −Σ (log(λ + 1e-5) + 1/(λ + 1e-5)). NaN if undefined."""
    j = np.asarray(jacobians.detach().cpu().double() if isinstance(jacobians, torch.Tensor)
                   else jacobians, dtype=np.float64)
    j = j.reshape(j.shape[0], -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.atleast_2d(np.corrcoef(j))
        if not np.isfinite(corr).all():
            return math.nan
        eig = np.linalg.eigvalsh(corr)
        k = JACOB_COV_EPS
        return float(-np.sum(np.log(eig + k) + 1.0 / (eig + k)))


def jacob_cov_score(net: nn.Module, x: torch.Tensor) -> float:
    """jacob_cov (train mode): correlation score of ∂(Σ_c f(x)_c)/∂x over the batch."""
    net = _prepare(net, train=True)
    x = x.detach().clone().requires_grad_(True)
    out = net(x)
    (jac,) = torch.autograd.grad(out, x, grad_outputs=torch.ones_like(out))
    return jacobian_correlation_score(jac.reshape(len(x), -1))


_RELU_FUNCS = {torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, torch.Tensor.relu,
               torch.Tensor.relu_}


class ReLUCodes(TorchFunctionMode):
    """Inside the block, record the binary code ``output > 0`` (flattened per sample, as a
    bool ``N × units`` tensor) of every ReLU/ReLU6 applied to a batch of ``batch_size``:
    modules and functional calls alike."""

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.codes: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if (func in _RELU_FUNCS and isinstance(out, torch.Tensor) and out.dim() > 0
                and out.shape[0] == self.batch_size):
            self.codes.append((out.detach() > 0).reshape(self.batch_size, -1))
        return out


def naswot_kernel(codes: Sequence[torch.Tensor]) -> torch.Tensor:
    """K_H = Σ over ReLU layers of c cᵀ + (1−c)(1−c)ᵀ for binary codes ``c`` (N × units),
    i.e. N_A − the Hamming distances between the codes of the N inputs (float64)."""
    if not codes:
        raise ValueError("no activation codes")
    n = codes[0].shape[0]
    k = torch.zeros(n, n, dtype=torch.float64, device=codes[0].device)
    for c in codes:
        c = c.to(torch.float64)
        k += c @ c.T + (1 - c) @ (1 - c).T
    return k


def naswot_score(net: nn.Module, x: torch.Tensor) -> float:
    """NASWOT (train mode, no gradients): log|det K_H| of the ReLU codes of the batch, one
    ReLU per operation reading a state (shared ReLUs switched off, as the reference counts)."""
    net = _prepare(net, train=True)
    recorder = ReLUCodes(len(x))
    with torch.no_grad(), unshared_relus(net), recorder:
        net(x)
    if not recorder.codes:
        return -math.inf  # no ReLU: K = 0
    _, logabsdet = torch.linalg.slogdet(naswot_kernel(recorder.codes).cpu())
    return float(logabsdet)


# --------------------------------------------------------------------------------------------
# estimators
# --------------------------------------------------------------------------------------------


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


class ProxyEstimator:
    """Common machinery: build the network under a forked RNG seeded with ``seed`` (like
    RWE), draw a seeded minibatch of ``batch_size`` training images, compute the proxy on
    ``device`` (``auto``: CUDA when available) and wrap it into a lower-is-better
    :class:`Score`. Subclasses implement :meth:`compute`."""

    name = "proxy"
    higher_is_better = True
    needs_data = True

    def __init__(self, batch_size: int = 64, device: str = "auto") -> None:
        self.batch_size = _check_batch_size(batch_size)
        self.device = resolve_device(device)

    def compute(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        raise NotImplementedError  # pragma: no cover - abstract

    def score(self, network_factory: Callable[[], nn.Module], split: Split, *,
              seed: int = 0) -> Score:
        t0 = time.perf_counter()
        net = build_network(network_factory, seed).to(self.device)
        if self.needs_data:
            x, y = draw_batch(split, self.batch_size, seed)
        else:
            x, y = split.train_x[:1], split.train_y[:1]
        x, y = x.to(self.device), y.to(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            raw = self.compute(net, x, y)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return make_score(self.name, raw, time.perf_counter() - t0,
                          higher_is_better=self.higher_is_better)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_size={self.batch_size}, device='{self.device}')"


class SynFlow(ProxyEstimator):
    """SynFlow: BatchNorm bypassed (removed), float64, |θ|, one all-ones input; higher is
    better, value = −raw. ``batch_size`` is unused (the input is a single image of ones)."""

    name = "synflow"
    needs_data = False

    def compute(self, net, x, y):
        return synflow_score(net, tuple(x.shape[1:]), self.device)


class SNIP(ProxyEstimator):
    """SNIP Σ|θ ⊙ ∂L/∂θ|, BatchNorm in train mode (batch statistics); value = −raw."""

    name = "snip"

    def compute(self, net, x, y):
        return snip_score(net, x, y)


class GradNorm(ProxyEstimator):
    """Σ ‖∂L/∂θ‖₂ over weight tensors, BatchNorm in train mode; value = −raw."""

    name = "grad_norm"

    def compute(self, net, x, y):
        return grad_norm_score(net, x, y)


class GraSP(ProxyEstimator):
    """GraSP Σ −θ ⊙ Hg, BatchNorm in train mode; value = −raw (as the zero-cost paper ranks
    it: higher is better)."""

    name = "grasp"

    def compute(self, net, x, y):
        return grasp_score(net, x, y)


class Fisher(ProxyEstimator):
    """Fisher at conv/linear outputs, BatchNorm in train mode; value = −raw."""

    name = "fisher"

    def compute(self, net, x, y):
        return fisher_score(net, x, y)


class JacobCov(ProxyEstimator):
    """Jacobian-correlation score (NASWOT v1), BatchNorm in train mode; value = −raw."""

    name = "jacob_cov"

    def compute(self, net, x, y):
        return jacob_cov_score(net, x)


class NASWOT(ProxyEstimator):
    """log|det K_H| of ReLU codes (NASWOT v2), BatchNorm in train mode; value = −raw."""

    name = "naswot"

    def compute(self, net, x, y):
        return naswot_score(net, x)


class Params(ProxyEstimator):
    """Baseline: the parameter count (auxiliary head excluded); value = −raw."""

    name = "params"
    needs_data = False

    def compute(self, net, x, y):
        return float(count_params(net))


class MAdds(ProxyEstimator):
    """Baseline: multiply-adds of one image (eval mode); value = −raw."""

    name = "madds"
    needs_data = False

    def compute(self, net, x, y):
        return float(count_madds(net, tuple(x.shape[1:])))


class RWEEstimator:
    """Random-Weight Evaluation (:func:`rwenas.estimators.rwe.rwe`): value = raw = the RWE
    error (a fraction; lower is better). Options are :class:`RWEConfig` fields."""

    name = "rwe"

    def __init__(self, config: RWEConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise ConfigError("give either an RWEConfig or its options, not both")
        self.config = config or RWEConfig(**options)

    def score(self, network_factory: Callable[[], nn.Module], split: Split, *,
              seed: int = 0) -> Score:
        t0 = time.perf_counter()
        result = rwe(network_factory, split, self.config, seed=seed)
        return make_score(self.name, result.error, time.perf_counter() - t0,
                          higher_is_better=False)


ESTIMATORS: dict[str, type] = {
    cls.name: cls for cls in (SynFlow, GraSP, Fisher, JacobCov, SNIP, GradNorm, NASWOT, Params,
                              MAdds, RWEEstimator)
}


def make_estimator(name: str, registry: Mapping[str, type] | None = None, **options: Any):
    """The estimator registered as ``name`` in ``registry`` (default :data:`ESTIMATORS`;
    ``-`` and ``_`` are interchangeable), built with ``options``; an unknown name or option
    raises :class:`ConfigError`."""
    registry = ESTIMATORS if registry is None else registry
    key = str(name).strip().lower().replace("-", "_")
    cls = registry.get(key)
    if cls is None:
        raise ConfigError(f"unknown estimator {name!r} (known: {', '.join(registry)})")
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for estimator {key!r}: {exc}") from None
