"""Any ``nn.Module`` as a transferscope model: where it comes from, its layers by name, its head, its input.

A model is named in ``[model] name``:

* a built-in model (``resnet``), registered with :func:`transferscope.models.register_model`;
* a factory ``"package.module:function"``, imported when the study starts (from the folder of the study config
  that names it, then the Python path: :func:`resolve_factory`) and called with ``[model] kwargs``;
* a plugin: an entry point of the group ``transferscope.models`` (declared by any installed package, as timm and
  pytest plugins are) whose object is such a factory;
* ``"torchvision:NAME"`` or ``"timm:NAME"``: built by ``torchvision.models.get_model(NAME, weights=None, **kwargs)``
  or ``timm.create_model(NAME, pretrained=False, **kwargs)`` when that library is installed.

The factory is called under ``torch.manual_seed(seed)`` (the global generator forked, so nothing else moves), so a
random initialisation (RI) is the architecture's own, drawn from the seed. :class:`Hooked` then gives the module
what the analyses use: features of named modules through forward hooks, a head to replace, parameters grouped by
module, and the input normalisation of the config.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import logging
import math
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

import torch
import torch.nn as nn

from ..config import ConfigError, ModelConfig, factory_folder, trusted_factories, untrusted_message

__all__ = ["ModelError", "Hooked", "resolve_factory", "build_external", "default_head", "load_weights", "ENTRY_POINT_GROUP",
           "HEAD_CANDIDATES", "check_shapes"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "transferscope.models"
HEAD_CANDIDATES = ("fc", "head", "classifier")
"""Module names tried, in this order, as the head when ``[model] head`` is empty."""


class ModelError(ConfigError):
    """An unknown model or a model that cannot be built as configured (the message names the config key)."""


def _adapter(library: str, name: str) -> Callable[..., nn.Module]:
    try:
        mod = importlib.import_module("torchvision.models" if library == "torchvision" else "timm")
    except ImportError as e:
        missing = (getattr(e, "name", None) or library).split(".")[0]
        if missing == library:
            raise ModelError(f"model.name {library}:{name}: needs the {library} package, which is not installed "
                             f"({e}); install it ('pip install {library}') with a torch build it supports") from None
        raise ModelError(f"model.name {library}:{name}: {library} is installed but importing it needs {missing}, "
                         f"which is not ({e}); install {missing} built for this torch ({torch.__version__})") from None
    except Exception as e:  # installed, but it fails as it is imported: most often a build made for another torch
        raise ModelError(f"model.name {library}:{name}: {library} is installed but importing it raised "
                         f"{type(e).__name__}: {e}; torchvision (which timm imports) must be the build made for this "
                         f"torch ({torch.__version__}): a CUDA build beside a CPU-only torch fails so") from None
    if library == "torchvision":
        return lambda **kw: mod.get_model(name, weights=None, **kw)
    return lambda **kw: mod.create_model(name, pretrained=False, **kw)


def _import(module: str, folder: str) -> Any:
    """``importlib.import_module(module)`` with ``folder`` (when given) first on ``sys.path`` for this import only:
    the entry is taken out again afterwards, whatever the import did (modules it imported stay imported)."""
    if not folder:
        return importlib.import_module(module)
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(module)
    finally:
        with contextlib.suppress(ValueError):  # ValueError: the import took it out itself
            sys.path.remove(folder)  # the first equal entry: the one put there (or an equal one it shadowed)


def resolve_factory(name: str, folder: str | None = None) -> Callable[..., nn.Module]:
    """The callable that builds the model ``name`` (not a built-in): see the module docstring for the forms.

    A factory's module is imported from ``folder`` first, then the Python path; ``folder`` None: the folder of the
    user's own study config that named the factory (:func:`~transferscope.config.factory_folder`, recorded by
    :func:`~transferscope.config.load_config`), none for a factory trusted by name only (a results folder's)."""
    lib, sep, rest = name.partition(":")
    if sep and lib in ("torchvision", "timm"):
        return _adapter(lib, rest)
    if sep:
        if not lib or not rest:
            raise ModelError(f"model.name {name!r}: expected 'package.module:function'")
        if name not in trusted_factories():  # before anything is imported
            raise ModelError(untrusted_message(name))
        where = factory_folder(name) if folder is None else folder
        try:
            mod = _import(lib, where)
        except ImportError as e:
            looked = (f"looked in the study config's folder {where} and on the Python path" if where else
                      "a factory's module is imported from the folder of the study config that names it, or from the "
                      "Python path (PYTHONPATH)")
            raise ModelError(f"model.name {name!r}: cannot import {lib!r} ({e}); {looked}") from None
        except Exception as e:  # the user's module failed as it was imported: one line naming it and what it raised
            raise ModelError(f"model.name {name!r}: importing {lib!r} raised {type(e).__name__}: {e}") from None
        obj: Any = mod
        for part in rest.split("."):
            if not hasattr(obj, part):
                raise ModelError(f"model.name {name!r}: {lib!r} has no attribute {rest!r}")
            obj = getattr(obj, part)
        if not callable(obj):
            raise ModelError(f"model.name {name!r}: {rest!r} is not callable")
        return obj
    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name in eps:
        return eps[name].load()
    from . import list_models

    raise ModelError(f"model.name {name!r}: not a built-in model ({', '.join(list_models())}), not a plugin of "
                           f"the entry-point group {ENTRY_POINT_GROUP!r}"
                           + (f" ({', '.join(sorted(eps))})" if eps else "")
                           + ", and not a factory 'package.module:function'")


def _close(name: str, names: Iterable[str]) -> str:
    names = list(names)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
    return f"close matches: {', '.join(close)}" if close else f"modules are: {', '.join(names[:30])}"


def default_head(net: nn.Module) -> str:
    mods = dict(net.named_modules())
    for n in HEAD_CANDIDATES:
        if isinstance(mods.get(n), nn.Linear):
            return n
    linears = [n for n, m in mods.items() if isinstance(m, nn.Linear)]
    raise ModelError("model.head: name the module that classifies (an nn.Linear); none of "
                           f"{', '.join(HEAD_CANDIDATES)} is one; the model's Linear modules are "
                           f"{', '.join(linears) or 'none'}")


def _init_linear(head: nn.Linear, generator: torch.Generator) -> None:
    bound = 1 / math.sqrt(head.in_features)
    nn.init.uniform_(head.weight, -bound, bound, generator=generator)
    nn.init.zeros_(head.bias)


def _norm_values(values: list[float], channels: int, key: str, default: float) -> torch.Tensor:
    v = list(values) or [default]
    if len(v) == 1:
        v = v * channels
    if len(v) != channels:
        raise ModelError(f"model.{key}: expected 1 or {channels} values (one per input channel), got {values}")
    if key == "std" and any(not x > 0 for x in v):
        raise ModelError(f"model.std: expected numbers > 0, got {values}")
    return torch.tensor(v, dtype=torch.float32).view(1, channels, 1, 1)


class Hooked(nn.Module):
    """A module ``net`` with the protocol of transferscope's models.

    * ``forward(x)``: ``x`` as every transferscope model takes it (images scaled to [-1, 1], see
      :func:`transferscope.models.to_input`), renormalised to the config's mean and std, then ``net``;
    * ``layer_names()``: the configured layers, then ``head``; ``features(x, names)``: their outputs in one forward
      pass (forward hooks), ``head`` being the logits;
    * ``module_of(param)``: the layer (or top-level module) a parameter belongs to, ``head`` for the head's;
    * ``reset_head(k, generator)``: a fresh ``nn.Linear`` with ``k`` outputs in place of the head.

    Parameters live under ``net.``; the normalisation is a non-persistent buffer (not in the weights).
    """

    def __init__(self, net: nn.Module, head: str, layers: list[str], in_channels: int,
                 mean: list[float] = (), std: list[float] = ()) -> None:
        super().__init__()
        self.net = net
        mods = dict(net.named_modules())
        if head not in mods or head == "":
            raise ModelError(f"model.head {head!r}: no such module; {_close(head, [n for n in mods if n])}")
        if not isinstance(mods[head], nn.Linear):
            linears = [n for n, m in mods.items() if isinstance(m, nn.Linear) and n.startswith(head)]
            raise ModelError(f"model.head {head!r} is a {type(mods[head]).__name__}, not an nn.Linear"
                                   + (f"; name its Linear, e.g. {linears[-1]!r}" if linears else ""))
        self.head_name = head
        if not layers:
            layers = [n for n, _ in net.named_children() if n != head.split(".")[0]]
        for n in layers:
            if n not in mods or n == "":
                raise ModelError(f"model.layers: {n!r} is not a module of the model; {_close(n, [m for m in mods if m])}")
            if n == head or n.startswith(head + "."):
                raise ModelError(f"model.layers: {n!r} is the head; the head's output is the layer 'head'")
        self.layers = list(layers)
        # x in [-1, 1] is (u - 0.5) / 0.5 for u in [0, 1]; the net wants (u - mean) / std
        mean_t = _norm_values(list(mean), in_channels, "mean", 0.5)
        std_t = _norm_values(list(std), in_channels, "std", 0.5)
        self.register_buffer("in_scale", 0.5 / std_t, persistent=False)
        self.register_buffer("in_shift", (0.5 - mean_t) / std_t, persistent=False)
        self._identity_input = bool(torch.all(mean_t == 0.5) and torch.all(std_t == 0.5))

    # ------------------------------------------------------------------ the protocol
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._normalise(x))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x if self._identity_input else x * self.in_scale + self.in_shift

    def layer_names(self) -> list[str]:
        return self.layers + ["head"]

    def module_names(self) -> list[str]:
        return self.layer_names()

    @property
    def head(self) -> nn.Linear:
        return self.net.get_submodule(self.head_name)

    def module_of(self, param_name: str) -> str:
        name = param_name.removeprefix("net.")
        if name == self.head_name or name.startswith(self.head_name + "."):
            return "head"
        for layer in sorted(self.layers, key=len, reverse=True):
            if name.startswith(layer + "."):
                return layer
        return name.split(".")[0]

    def features(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        from .resnet import check_layers

        wanted = check_layers(layers, self.layer_names())
        out: dict[str, torch.Tensor] = {}
        handles = []

        def keep(name: str):
            def hook(_module, _inputs, output):
                out[name] = output[0] if isinstance(output, tuple | list) else output
            return hook

        try:
            for n in set(wanted):
                module = self.head if n == "head" else self.net.get_submodule(n)
                handles.append(module.register_forward_hook(keep(n)))
            self.forward(x)
        finally:
            for h in handles:
                h.remove()
        return {n: out[n] for n in wanted}

    def reset_head(self, num_classes: int, generator: torch.Generator | None = None) -> None:
        old = self.head
        new = nn.Linear(old.in_features, num_classes, bias=True)
        _init_linear(new, generator or torch.Generator().manual_seed(0))
        parent, _, leaf = self.head_name.rpartition(".")
        setattr(self.net.get_submodule(parent) if parent else self.net, leaf, new)


def _call(factory: Callable[..., nn.Module], cfg: ModelConfig, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            net = factory(**cfg.kwargs)
        except TypeError as e:
            raise ModelError(f"model.name {cfg.name!r} with model.kwargs {cfg.kwargs}: {e}") from None
        except Exception as e:  # the user's code failed: one line naming it, what it raised, and the kwargs given
            raise ModelError(f"model.name {cfg.name!r}: the factory raised {type(e).__name__}: {e} (called with "
                             f"model.kwargs {cfg.kwargs})") from None
    if not isinstance(net, nn.Module):
        raise ModelError(f"model.name {cfg.name!r}: the factory returned a {type(net).__name__}, not an nn.Module")
    return net


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def reinitialise(net: nn.Module, seed: int, name: str = "") -> None:
    """The fallback initialisation: ``reset_parameters()`` of every module that owns parameters, under
    ``torch.manual_seed(seed)``. A module that owns parameters and has no ``reset_parameters`` is an error naming
    it (its weights would stay as the factory left them, the same for every seed)."""
    stuck = [n or type(m).__name__ for n, m in net.named_modules()
             if any(True for _ in m.parameters(recurse=False)) and not hasattr(m, "reset_parameters")]
    if stuck:
        raise ModelError(f"model.name {name!r}: its initialisation does not depend on the seed, and these modules "
                         f"cannot be re-initialised (no reset_parameters): {', '.join(stuck)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in net.modules():
            if any(True for _ in m.parameters(recurse=False)):
                m.reset_parameters()


def build_external(cfg: ModelConfig, in_channels: int, num_classes: int, seed: int) -> Hooked:
    """The model of ``cfg`` (not a built-in) with its own random initialisation drawn from ``seed`` and a fresh head
    with ``num_classes`` outputs.

    The factory is called under ``torch.manual_seed(seed)``, which keeps the architecture's own initialisation
    (e.g. Fixup's). A factory whose weights do not change with the seed (it draws from a generator of its own, or
    loads fixed weights) would give every RI the same start: it is detected by a second call with another seed, and
    then :func:`reinitialise` (``reset_parameters`` of every module) draws the weights from the seed, with a
    warning."""
    factory = resolve_factory(cfg.name)
    net = _call(factory, cfg, seed)
    if any(True for _ in net.parameters()) and _same_weights(net, _call(factory, cfg, seed + 7919)):
        log.warning("model.name %r: the factory's weights do not depend on the seed; every module is re-initialised "
                    "with reset_parameters() from seed %d instead (not the architecture's own initialisation)",
                    cfg.name, seed)
        reinitialise(net, seed, cfg.name)
    head = cfg.head or default_head(net)
    model = Hooked(net, head, list(cfg.layers), in_channels, cfg.mean, cfg.std)
    model.reset_head(num_classes, torch.Generator().manual_seed(seed))
    return model


def load_weights(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a file: safetensors, or a ``.pt``/``.pth`` read with ``torch.load(weights_only=True)``
    (a checkpoint dict holding ``state_dict`` or ``model`` is unwrapped; a ``module.`` prefix is removed)."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model.weights {path!r}: no such file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        elif p.suffix in (".pt", ".pth", ".bin"):
            state = torch.load(p, map_location="cpu", weights_only=True)
            if isinstance(state, dict):
                for k in ("state_dict", "model"):
                    if isinstance(state.get(k), dict):
                        state = state[k]
                        break
        else:
            raise ModelError(f"model.weights {path!r}: expected a .safetensors, .pt or .pth file")
    except ModelError:
        raise
    except Exception as e:  # corrupt file, a pickle of objects that weights_only refuses, ...
        raise ModelError(f"model.weights {path!r}: cannot be read as weights ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"model.weights {path!r}: expected a mapping of parameter names to tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def check_shapes(body: nn.Module, state: dict[str, torch.Tensor], key: str, path: str, skip: str = "") -> None:
    """Weights that do not fit the model in shape: a :class:`ModelError` naming the config ``key`` and file, and the
    first mismatched tensors with both shapes (``skip``: a prefix not compared, the head, whose classes differ)."""
    own = body.state_dict()
    bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
           if k in own and not (skip and k.startswith(skip)) and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        shown = "; ".join(f"{k}: {f} in the file, {m} in the model" for k, f, m in bad[:4])
        raise ModelError(f"{key} {path!r}: {len(bad)} tensors of other shapes than the model's: {shown}"
                         + (" (and more)" if len(bad) > 4 else ""))
