"""Sub-network reuse: apply one module several times, optionally with a new normalization layer per reuse.

The paper's pose and dense-regression networks reuse a sub-network (a refinement stage, a decoder) k times:
its conv/linear weights are shared between the applications, but each application may get its own
BatchNorm (statistics and affine parameters), because the activations it sees differ. ``Reused`` is that:

    stage = Reused(make_stage(), times=5, new_norm=True)
    for k in range(5):
        heatmaps = stage(torch.cat([features, heatmaps], 1), step=k)

Application 0 uses the sub-network's own norm layers; applications 1..k-1 use deep copies of them, held in
``norms.<k-1>`` (so ``times=1`` is exactly the wrapped module, and a state_dict has one norm set per
application). The swap is done by replacing the norm modules inside the shared sub-network for the duration
of one call, which works with ``convert`` (the shared weights are generated once per forward), with hooks,
``deepcopy`` and ``state_dict``, and costs nothing when ``new_norm=False``.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager

from torch import nn

NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm,
                                           nn.LocalResponseNorm)


def norm_paths(module: nn.Module) -> list[str]:
    """Dotted names of the normalization layers inside ``module`` (BatchNorm/InstanceNorm/GroupNorm/LayerNorm)."""
    return [name for name, sub in module.named_modules() if name and isinstance(sub, NORM_TYPES)]


def _parent(root: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent_path, _, leaf = path.rpartition(".")
    return (root.get_submodule(parent_path) if parent_path else root), leaf


class Reused(nn.Module):
    """``module`` applied ``times`` times with shared weights; with ``new_norm`` each application has its own
    copies of the norm layers.

    Args:
        module: the sub-network to reuse.
        times: number of applications (>= 1).
        new_norm: give every application after the first its own copy of each norm layer.

    Call it as ``reused(*args, step=k, **kwargs)`` with 0 <= k < times.
    """

    def __init__(self, module: nn.Module, times: int, *, new_norm: bool = True):
        super().__init__()
        if not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be an int >= 1, got {times!r}")
        self.module, self.times, self.new_norm = module, times, new_norm
        self.paths = norm_paths(module) if new_norm else []
        if new_norm and not self.paths:
            raise ValueError(f"new_norm=True but {type(module).__name__} has no normalization layer "
                             f"({', '.join(t.__name__ for t in NORM_TYPES)}); pass new_norm=False")
        # ModuleDict keys cannot hold dots: "layer.0.bn" is stored as "layer-0-bn".
        self.norms = nn.ModuleList(
            nn.ModuleDict({p.replace(".", "-"): copy.deepcopy(module.get_submodule(p)) for p in self.paths})
            for _ in range(times - 1)) if new_norm else nn.ModuleList()

    def norms_of(self, step: int) -> dict[str, nn.Module]:
        """The norm modules application ``step`` uses, by their path inside ``module``."""
        self._check_step(step)
        if step == 0 or not self.new_norm:
            return {p: self.module.get_submodule(p) for p in self.paths}
        return {p: self.norms[step - 1][p.replace(".", "-")] for p in self.paths}

    def _check_step(self, step) -> None:
        if not isinstance(step, int) or not 0 <= step < self.times:
            raise ValueError(f"step must be an int in [0, {self.times}), got {step!r}")

    @contextmanager
    def using_norms(self, step: int):
        """Inside this context ``self.module`` runs with the norm layers of application ``step``."""
        self._check_step(step)
        if step == 0 or not self.new_norm:
            yield self.module
            return
        originals = {p: self.module.get_submodule(p) for p in self.paths}
        try:
            for path, norm in self.norms_of(step).items():
                parent, leaf = _parent(self.module, path)
                setattr(parent, leaf, norm)
            yield self.module
        finally:
            for path, norm in originals.items():
                parent, leaf = _parent(self.module, path)
                setattr(parent, leaf, norm)

    def forward(self, *args, step: int, **kwargs):
        with self.using_norms(step) as module:
            return module(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"times={self.times}, new_norm={self.new_norm}"
