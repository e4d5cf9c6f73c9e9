"""What a checkpoint must be for its registry entry, checked before its network is built.

A checkpoint describes a network (its ``config.json``, or its tensor shapes) and the registry
entry says what the user asked for. Loading the wrong one gives wrong units with exit 0 (a
relative Depth Anything run as a metric entry writes "metres" from 0 to 0.0002), and a lying one
allocates without bound (a 3.7 KB file of empty tensors that describes a 76 GB network). So every
loader (:mod:`.hf`, :mod:`.vda`, :mod:`.da3`) checks, in this order, before it allocates:

1. the description (``config.json``): the Transformers ``model_type`` the entry names, relative
   or metric as the entry is, the entry's maximum depth, and every layer count and list length
   within :data:`~localdepth.limits.MAX_CONFIG_LAYERS` and
   :data:`~localdepth.limits.MAX_CONFIG_LIST_ITEMS` (a million-layer network takes minutes to
   build, even without memory);
2. the size of the network it describes, built on PyTorch's meta device (no memory): at most
   :data:`~localdepth.limits.MAX_NETWORK_PARAMS`, at most
   :data:`~localdepth.limits.MAX_NETWORK_SIZE_RATIO` times the entry's size, and not the size of
   another released entry of the family (a Base checkpoint is not ``depth-anything-v2-small``,
   whose licence and name would then be wrong);
3. the weights against that network: every weight the network reads is there with its shape,
   and no other tensor. Weights that the forward pass never reads may be absent: released
   DPT-style checkpoints omit the residual unit of the first fusion layer, which is never called
   (found by tracing a forward pass on the meta device, :func:`unread_weights`).

Each refusal is one line (:class:`~localdepth.errors.WeightsError`) that names the first
offending key or value and, where one fits, the entry to use instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..errors import WeightsError
from ..limits import MAX_CONFIG_LAYERS, MAX_CONFIG_LIST_ITEMS, MAX_NETWORK_PARAMS, MAX_NETWORK_SIZE_RATIO
from ..registry import MODELS, ModelSpec

#: a network within this fraction of an entry's ``params_millions`` has that entry's size (the
#: registry's counts are rounded or, for Video Depth Anything, taken from its README: 2.3 % off)
SAME_SIZE = 0.05


def _millions(count: float) -> str:
    return f"{count / 1e9:.1f}B" if count >= 1e9 else f"{count / 1e6:.1f}M"


# ----------------------------------------------------------------------------- 1. the description

def check_description(spec: ModelSpec, config: dict, where: str) -> None:
    """``config.json`` of a Transformers checkpoint, as parsed JSON, against ``spec``: its
    ``model_type`` and the ceilings on layer counts and list lengths (before anything is built)."""
    if not isinstance(config, dict):
        raise WeightsError(f"{where}: config.json holds a {type(config).__name__}, not a configuration")
    _check_ceilings(config, where, "")
    found = config.get("model_type")
    if spec.config_type and found != spec.config_type:
        owners = [s.name for s in MODELS.values() if s.config_type == found]
        hint = f"; it is a checkpoint of {owners[0]}'s kind: use --model {owners[0]}" if owners else ""
        raise WeightsError(f"{where} holds a '{found}' network, not the '{spec.config_type}' of {spec.name}{hint}")


def _layer_count(key: str, value) -> int | None:
    """The number of layers a config entry asks for (``num_hidden_layers``, ``num_fov_head_layers``,
    a backbone's ``depths`` per stage), or None for other entries."""
    key = key.lower()
    if not ("layers" in key or key in ("depth", "depths", "num_blocks")):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return sum(value)
    return None


def _check_ceilings(value, where: str, path: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            layers = _layer_count(str(key), item)
            if layers is not None and layers > MAX_CONFIG_LAYERS:
                raise WeightsError(f"{where}: config.json asks for {name} = {item}, more than the {MAX_CONFIG_LAYERS} "
                                   "layers any depth network here has (limits.py); refusing to build it")
            _check_ceilings(item, where, name)
    elif isinstance(value, list):
        if len(value) > MAX_CONFIG_LIST_ITEMS:
            raise WeightsError(f"{where}: config.json has {len(value)} items in {path}, more than "
                               f"{MAX_CONFIG_LIST_ITEMS} (limits.py); refusing to build it")
        for item in value:
            _check_ceilings(item, where, path)


def check_outputs(spec: ModelSpec, config, where: str) -> None:
    """What a Transformers config says its network predicts, against ``spec``: relative or metric,
    the maximum depth, a field of view. ``config`` is the Transformers config object (defaults filled)."""
    kind = getattr(config, "depth_estimation_type", None)
    if kind is not None:
        metric = kind == "metric"
        if metric != (spec.output == "depth"):
            raise WeightsError(f"{where} holds a {kind} depth network (depth_estimation_type '{kind}'), but {spec.name} "
                               f"predicts {spec.units}{_instead(spec, metric=metric)}")
    if spec.predicts_camera and getattr(config, "use_fov_model", True) is False:
        raise WeightsError(f"{where} has no field-of-view head (use_fov_model false), which {spec.name} needs "
                           "for its camera and metres")
    if spec.max_depth is None or not spec.metric:
        return
    top = _max_depth_of(config)
    if top is not None and abs(float(top) - spec.max_depth) > 1e-6 * spec.max_depth:
        raise WeightsError(f"{where} predicts depth up to {float(top):g} m, but {spec.name} goes up to "
                           f"{spec.max_depth:g} m{_instead(spec, metric=True, max_depth=float(top))}")


def _max_depth_of(config) -> float | None:
    """The deepest metric depth a config's network predicts: ``max_depth`` (Depth Anything), the
    largest ``max_depth`` of its bin configurations (ZoeDepth); None where it states none."""
    bins = getattr(config, "bin_configurations", None)
    if bins:
        depths = [b.get("max_depth") for b in bins if isinstance(b, dict) and b.get("max_depth") is not None]
        return max(depths) if depths else None
    if getattr(config, "model_type", None) in ("depth_anything",):
        return getattr(config, "max_depth", None)
    return None


def _instead(spec: ModelSpec, *, metric: bool, max_depth: float | None = None) -> str:
    """``"; use --model NAME"`` for the entry of the same kind and size that fits, or ``""``."""
    fits = [s for s in MODELS.values() if s.config_type == spec.config_type and s.format == spec.format
            and (s.output == "depth") == metric and (max_depth is None or s.max_depth == max_depth)]
    fits.sort(key=lambda s: abs(s.params_millions - spec.params_millions))
    return f"; use --model {fits[0].name}" if fits else ""


# ----------------------------------------------------------------------------- 2. the size

def count_parameters(network) -> int:
    """Parameters of a module (built on the meta device: nothing allocated)."""
    return sum(p.numel() for p in network.parameters())


def check_size(spec: ModelSpec, params: int, where: str) -> None:
    """The size of the network a checkpoint describes, against the hard ceiling and ``spec``."""
    if params > MAX_NETWORK_PARAMS:
        raise WeightsError(f"{where} describes a network of {_millions(params)} parameters, more than any model "
                           f"localdepth builds ({_millions(MAX_NETWORK_PARAMS)}, limits.py); refusing to build it")
    entry = spec.params_millions * 1e6
    if params > MAX_NETWORK_SIZE_RATIO * entry:
        raise WeightsError(f"{where} describes a network of {_millions(params)} parameters, {params / entry:.1f} times "
                           f"{spec.name} ({_millions(entry)}): not a checkpoint of it{_sized(spec, params)}")
    if abs(params - entry) > SAME_SIZE * entry:
        sibling = _released_size(spec, params)
        if sibling is not None:
            raise WeightsError(f"{where} holds a network of {_millions(params)} parameters, the size of {sibling.name}, "
                               f"not of {spec.name} ({_millions(entry)}); use --model {sibling.name}")


def _family(spec: ModelSpec) -> list[ModelSpec]:
    return [s for s in MODELS.values() if s.family == spec.family and s.name != spec.name]


def _released_size(spec: ModelSpec, params: int) -> ModelSpec | None:
    """Another entry of ``spec``'s family whose released network has ``params`` parameters."""
    same = [s for s in _family(spec) if abs(params - s.params_millions * 1e6) <= SAME_SIZE * s.params_millions * 1e6]
    same.sort(key=lambda s: (s.max_depth != spec.max_depth, abs(params - s.params_millions * 1e6)))
    return same[0] if same else None


def _sized(spec: ModelSpec, params: int) -> str:
    sibling = _released_size(spec, params)
    return f"; use --model {sibling.name}" if sibling is not None else ""


# ----------------------------------------------------------------------------- 3. the weights

def check_weights(spec: ModelSpec, where: str, expected: Iterable[str], *, missing: Iterable[str] = (),
                  unexpected: Iterable[str] = (), mismatched: Iterable[tuple] = (),
                  unread: Callable[[], set[str]] | None = None) -> None:
    """The tensors a checkpoint gave against the network's weights (``expected``, in the network's
    order): a shape mismatch, a missing weight the network reads, or a tensor the network has no
    place for is refused, naming the first. ``unread()`` gives the weights the forward pass never
    reads (asked only when some are missing); those may be absent."""
    expected = list(expected)
    order = {key: i for i, key in enumerate(expected)}
    mismatched = sorted(mismatched, key=lambda m: order.get(m[0], len(order)))
    if mismatched:
        key, got, want = mismatched[0]
        raise WeightsError(f"{where} does not match {spec.name}: weight '{key}' has shape {tuple(got)}, expected "
                           f"{tuple(want)} ({len(mismatched)} of {len(expected)} differ)")
    missing = [k for k in expected if k in set(missing)]
    if missing:
        allowed = unread() if unread is not None else set()
        used = [k for k in missing if k not in allowed]
        if used:
            raise WeightsError(f"{where} does not match {spec.name}: weight '{used[0]}' is missing ({len(used)} of "
                               f"{len(expected)} missing; the network would run on random values there)")
    unexpected = sorted(unexpected)
    if unexpected:
        raise WeightsError(f"{where} does not match {spec.name}: tensor '{unexpected[0]}' is not a weight of its "
                           f"network ({len(unexpected)} unexpected)")


def unread_weights(network, inputs: dict) -> set[str]:
    """Names of the parameters and buffers of ``network`` (on the meta device) that one forward
    pass on ``inputs`` (meta tensors) never reads.

    Every torch function call is watched (a :class:`~torch.overrides.TorchFunctionMode`), so a
    weight counts as read when any operation takes it. A weight counts as unread only when its
    module, or a module around it, finished without reading it (a submodule its parent never
    calls is unread once the parent has finished). Where the pass stops early (a step that needs
    real values, such as ZoeDepth's routing between its heads), the modules that did not finish
    keep all their weights counted as read, so nothing is excused by mistake.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    named = [*network.named_parameters(remove_duplicate=False), *network.named_buffers(remove_duplicate=False)]
    watched = {id(t) for _, t in named}
    read: set[int] = set()

    def note(value) -> None:
        if isinstance(value, torch.Tensor):
            if id(value) in watched:
                read.add(id(value))
        elif isinstance(value, (list, tuple)):
            for item in value:
                note(item)
        elif isinstance(value, dict):
            for item in value.values():
                note(item)

    class Reads(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            note(args)
            note(kwargs or {})
            return func(*args, **(kwargs or {}))

    finished: set[str] = set()
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: finished.add(name))
             for name, module in network.named_modules()]
    try:
        with torch.no_grad(), Reads():
            network(**inputs)
    except Exception:  # noqa: S110 - a step that needs real values: count what finished
        pass
    finally:
        for hook in hooks:
            hook.remove()

    def ended_without(name: str) -> bool:  # the module holding it, or one around it, finished
        parts = name.split(".")[:-1]
        return any(".".join(parts[:i]) in finished for i in range(len(parts) + 1))

    return {name for name, t in named if id(t) not in read and ended_without(name)}
