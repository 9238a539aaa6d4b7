"""Faster training steps for the course's VAE on Keras's torch backend: the same math, fewer torch calls.

``train_vae`` switches this on for the length of one training run::

    with fast.enabled(vae):
        fast.fit(vae, x, ...)  # Keras's fit loop, leaner: see fit

and :func:`fit` runs Keras's ``fit`` loop for a float32 NumPy array without the
torch ``DataLoader`` Keras builds around it: the same batches, weights and logs.

Inside the block:

1. **Networks as chains of torch calls.** A network that is a plain chain of
   layers (the course's encoder and decoder are) runs its layers one after
   the other instead of going through ``Layer.__call__`` for each (input
   checks, name scopes, autocasting, masks). A float32 Dense layer with a
   bias and a ReLU, sigmoid, tanh or no activation is one ``torch.addmm``
   and one torch activation, as PyTorch's own ``Linear`` + activation;
   Flatten, Reshape and such an Activation layer are one torch call each;
   any other layer runs its own ``call``, with ``training`` passed on if it
   takes it. Inside a training or validation step the VAE's ``encoder`` and
   ``decoder`` attributes are stand-ins that call the chain directly, so the
   step makes no ``Layer.__call__`` at all; outside the steps (callbacks,
   saving, the chapters' own calls) they are the networks, whose own
   ``Layer.__call__`` runs the chain.
2. **Fused Adam.** Keras's Adam update (a dozen ``torch._foreach_*`` calls,
   five of which copy every weight) runs in PyTorch's fused kernel
   ``torch._fused_adam_``, one pass over the weights, in place. Only for
   Keras's own Adam class, and only when every one of its settings is on an
   allow-list of values that leave the update plain Adam (no AMSGrad, weight
   decay, clipping, EMA, loss scaling or gradient accumulation); a setting
   the list does not know turns it off.
3. **Random draws.** Inside a step, ``keras.random.normal`` with a
   ``SeedGenerator`` seed (the VAE's z draws) is drawn as Keras's torch
   backend draws it, the same numbers and the same generator state, without
   Keras's per-call wrappers (a new ``torch.Generator`` and a
   ``torch.compile`` guard each call).
4. **Metrics and the optimizer's bookkeeping.** The VAE's ``ELBOMetrics``
   adds to and reads its one state vector with torch calls instead of
   ``keras.ops``; ``optimizer.apply`` with gradients for exactly the
   variables the optimizer was built on goes straight to the fused update
   and adds one to ``iterations`` (Keras's ``apply`` would first check,
   filter, unscale and clip: no-ops with the allow-listed settings).
5. **keras.ops in the steps.** Inside a step, ``keras.ops.convert_to_tensor``,
   ``shape``, ``sum``, ``mean`` and ``exp`` called on a float32 torch tensor
   are the one torch call Keras's torch backend ends in, without its dispatch
   (symbolic-tensor check, device and dtype checks, a cast to the same dtype);
   any other argument goes to Keras.
6. **Weight lookups in the steps.** While a step runs, ``Variable.value``
   (of every Keras variable, in every thread) reads Keras's three scope
   slots itself and returns the variable's tensor when they are empty, as
   Keras's property does, without its three function calls. If that passes
   its check, the VAE is also made, for the step, an instance of a subclass
   of its class whose ``trainable_weights`` is the list kept from the start of
   ``fit`` while no ``trainable`` flag has changed and whose ``zero_grad()``
   sets the kept parameters' gradients to ``None`` (no walk over every layer
   each step); code in another thread during a step (Keras's worker thread
   for async-safe batch hooks under ``vae.fit``, not :func:`fit`) sees that
   subclass.

All six rest on details that Keras and PyTorch do not promise to keep
(``Layer.call``'s arguments, a model's attributes, the optimizer's moment
slots, variable list and ``_parallel_update_step``, a private PyTorch
kernel, how the torch backend seeds its draws and ends its ops, where it
keeps its scopes). Each is
therefore checked against Keras's own result on tiny inputs before it is
used: the chain once per network, the kernel, the draws, the metric, the
ops and ``Variable.value`` once per process and device. What fails the check is not used, and a ``FastPathWarning``
says which part fell back and why. Whatever the network, the fallback is
Keras's own code, so the result is the same, only slower
(``tests/test_fast.py`` trains with and without the block and compares
the weights). The networks are looked up when the block starts: an encoder
or decoder swapped in before ``fit`` is the one that runs fast. :func:`fit` is the
exception to the checks: it rests on how Keras's ``fit`` draws its shuffle from
torch's global generator, which ``tests/test_fast.py`` checks at the pinned
versions (the same weights as ``vae.fit``, bit for bit), not at run time.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import warnings
import weakref
from collections.abc import Iterator

import keras
import numpy as np
import torch
from keras import layers
from keras.src.backend.common import global_state


class FastPathWarning(UserWarning):
    """A part of the fast path is not used (the result is the same, training is slower)."""


def _warn(what: str, why: str) -> None:
    warnings.warn(
        f"vae_course.fast: {what} falls back to Keras's own code ({why}); results are the same, training is slower.",
        FastPathWarning,
        stacklevel=3,
    )


# ------------------------------------------------------------- chained layers
def _takes(layer: keras.layers.Layer, name: str) -> bool:
    return name in inspect.signature(layer.call).parameters


def chain_of(model: keras.Model) -> tuple[list[keras.layers.Layer] | None, str]:
    """The layers of ``model`` in order if it is a plain chain, else ``(None, why not)``.

    A plain chain: one input; every layer called once, on the previous
    layer's output alone; the last layer's output is the model's; no layer
    takes a ``mask``, has an activity regularizer, or computes in a dtype
    other than float32. Found with Keras's public ``layer.input`` and
    ``layer.output`` (the tensors of a layer's first call).
    """
    try:
        if not isinstance(model, keras.Model) or len(model.inputs) != 1:
            return None, "not a Keras functional model with one input"
        chain, prev = [], [model.inputs[0]]
        for layer in model.layers:
            if isinstance(layer, layers.InputLayer):
                continue
            if _takes(layer, "mask") or layer.activity_regularizer is not None:
                return None, f"layer {layer.name!r} takes a mask or has an activity regularizer"
            if layer.compute_dtype != "float32":
                return None, f"layer {layer.name!r} computes in {layer.compute_dtype}"
            inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
            if len(inputs) != len(prev) or any(a is not b for a, b in zip(inputs, prev)):
                return None, f"layer {layer.name!r} is not fed by the layer before it alone"
            prev = list(layer.output) if isinstance(layer.output, (list, tuple)) else [layer.output]
            chain.append(layer)
        if len(prev) != len(model.outputs) or any(a is not b for a, b in zip(prev, model.outputs)):
            return None, "its outputs are not the last layer's"
        return chain, ""
    except (AttributeError, TypeError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


# Keras activations (public functions) and the torch functions that compute them.
_TORCH_ACTIVATIONS = {
    keras.activations.relu: torch.relu,
    keras.activations.sigmoid: torch.sigmoid,
    keras.activations.tanh: torch.tanh,
    keras.activations.linear: None,
}


def _plain_dense(layer: keras.layers.Layer) -> bool:
    return (
        type(layer) is layers.Dense
        and layer.bias is not None
        and layer.activation in _TORCH_ACTIVATIONS
        and not getattr(layer, "lora_enabled", False)
        and getattr(layer, "quantization_mode", None) is None
    )


def _torch_step(layer: keras.layers.Layer):
    """``layer``'s computation as a function ``f(x, training)`` of one torch tensor.

    A float32 Dense layer with a bias and a plain activation is
    ``activation(torch.addmm(bias, x, kernel))`` on 2-D input (one torch call,
    as PyTorch's own ``Linear``); Flatten, Reshape and a plain Activation
    layer are one torch call each. Any other layer runs its own ``call``,
    with ``training`` passed on if it takes it.
    """
    if _plain_dense(layer):
        kernel, bias, act = (
            layer.kernel.value,
            layer.bias.value,
            _TORCH_ACTIVATIONS[layer.activation],
        )

        def dense(x, training):
            if x.ndim != 2:  # Dense on a 3-D input: Keras's own call
                return layer.call(x)
            y = torch.addmm(bias, x, kernel)
            return act(y) if act is not None else y

        return dense
    if type(layer) is layers.Flatten and layer.data_format == "channels_last":
        return lambda x, training: x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(-1, 1)
    if type(layer) is layers.Reshape:
        target = tuple(-1 if d is None else d for d in layer.target_shape)
        return lambda x, training: x.reshape(x.shape[0], *target)
    if type(layer) is layers.Activation and layer.activation in _TORCH_ACTIVATIONS:
        act = _TORCH_ACTIVATIONS[layer.activation]
        return (lambda x, training: act(x)) if act is not None else (lambda x, training: x)
    if _takes(layer, "training"):
        return lambda x, training: layer.call(x, training=training)
    return lambda x, training: layer.call(x)


def _chain_call(chain: list[keras.layers.Layer]):
    """A replacement for a model's ``call``: its layers' computations in turn, ``training`` passed on.

    The layers' weights are looked up once, here: run it only while the
    layers keep their variables (Keras assigns new values in place).
    """
    steps = [_torch_step(layer) for layer in chain]
    device = next((w.value.device for layer in chain for w in layer.weights), None)

    def call(inputs, training=None, mask=None):
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        if not (torch.is_tensor(x) and x.device == device):  # a step's batch already is
            x = keras.ops.convert_to_tensor(x)  # onto Keras's device, as Keras's layers put it
        for step in steps:
            x = step(x, training)
        return list(x) if isinstance(x, tuple) else x

    return call


# network -> (its chain's layers, the check's result): each network and chain is checked once.
_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _chained(model: keras.Model, what: str) -> Iterator[object]:
    """Run ``model`` as a chain of its layers inside the block.

    Yields a stand-in for the network (see :class:`_StandIn`), or ``None`` if
    the network is not a chain that computes what it computes.
    """
    chain, why = chain_of(model)
    if chain is None:
        _warn(f"the {what} {getattr(model, 'name', '')!r}", f"not a plain chain of layers: {why}")
        yield None
        return
    key = tuple((id(layer), type(layer), getattr(layer, "activation", None)) for layer in chain)
    checked = _CHECKED.get(model)
    if checked is None or checked[0] != key:
        checked = _CHECKED[model] = (key, _chain_works(model, chain))
    ok, why = checked[1]
    if not ok:
        _warn(f"the {what} {model.name!r}", why)
        yield None
        return
    call = _chain_call(chain)
    vars(model)["call"] = call  # an instance attribute: Layer.__call__ finds it first
    try:
        yield _StandIn(model, call)
    finally:
        vars(model).pop("call", None)


class _StandIn:
    """A network's chain, called directly; every other attribute is the network's own.

    During a training or validation step the VAE's ``encoder`` and ``decoder``
    are these, so the step skips ``Layer.__call__`` (input checks, call
    context, name scopes: about a quarter of a millisecond per network on a
    laptop CPU). Outside the steps, e.g. when a callback saves the model,
    the attributes are the networks again.
    """

    __slots__ = ("network", "chain")

    def __init__(self, network, chain):
        self.network, self.chain = network, chain

    def __call__(self, inputs, training=None, mask=None):
        return self.chain(inputs, training=training)

    def __getattr__(self, name):
        return getattr(self.network, name)


@contextlib.contextmanager
def _direct_steps(vae: keras.Model, stand_ins: dict, functions: dict, lean=None) -> Iterator[None]:
    """Inside the block, ``vae.train_step`` and ``vae.test_step`` run with the stand-ins.

    ``stand_ins`` maps attribute names ("encoder", "decoder") to stand-ins;
    ``functions`` maps (module or class, name) to a replacement, e.g.
    (keras.random, "normal") to :func:`_direct_normal`'s; ``lean`` is
    :func:`_lean_class`'s subclass of the VAE's class, or a function that
    makes it at the first step (for a model that ``fit`` builds), or ``None``.
    Each step puts the stand-ins in the VAE's instance dict (where attribute
    lookup finds them before the tracked networks) and the replacements in
    their modules and classes, and makes the VAE an instance of the lean
    class; all is put back when the step ends, also after an error. Not for
    steps of two models running at once in two threads: each step puts back
    what it found.
    """
    attrs = vars(vae)
    if (not stand_ins and not functions and lean is None) or any(
        name in attrs for name in ("train_step", "test_step", *stand_ins)
    ):
        yield
        return
    swaps = [(owner, name, fn) for (owner, name), fn in functions.items()]
    own_class = type(vae)
    step_class = [lean or own_class] if lean is None or isinstance(lean, type) else []

    def direct(step):
        def run(data):
            if not step_class:  # the model is built now
                step_class.append(lean() or own_class)
            attrs.update(stand_ins)
            originals = [getattr(owner, name) for owner, name, _ in swaps]
            for owner, name, fn in swaps:
                setattr(owner, name, fn)
            object.__setattr__(vae, "__class__", step_class[0])  # not Module.__setattr__
            try:
                return step(data)
            finally:
                object.__setattr__(vae, "__class__", own_class)
                for (owner, name, _), original in zip(swaps, originals):
                    setattr(owner, name, original)
                for name in stand_ins:
                    attrs.pop(name, None)

        return run

    attrs["train_step"], attrs["test_step"] = direct(vae.train_step), direct(vae.test_step)
    try:
        yield
    finally:
        attrs.pop("train_step", None)
        attrs.pop("test_step", None)


def _chain_works(model: keras.Model, chain: list[keras.layers.Layer]) -> tuple[bool, str]:
    """Check, on a tiny batch, that the chain computes what ``model`` computes."""
    try:
        shape = (3, *model.inputs[0].shape[1:])
        x = keras.ops.convert_to_tensor(
            np.random.default_rng(0).random(shape, dtype=np.float32)
        )  # Keras's device
        with torch.no_grad():
            want = model(x, training=False)
            got = _chain_call(chain)(x, training=False)
        want = want if isinstance(want, (list, tuple)) else [want]
        got = got if isinstance(got, (list, tuple)) else [got]
        same = len(want) == len(got) and all(
            torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(want, got)
        )
        return same, "" if same else "its layers called in a chain do not give the model's output"
    except Exception as exc:  # any failure means: do not use it
        return False, f"calling its layers in a chain failed: {type(exc).__name__}: {exc}"


# -------------------------------------------------------------------- metrics
def _direct_metric(metric):
    """``update_state`` and ``result`` of a :class:`~vae_course.models.ELBOMetrics` as torch calls.

    The same operations on the metric's one state vector ``sums`` (Keras's public
    ``Variable.value``), without a ``keras.ops`` wrapper around each: sum the three
    per-example tensors, count the examples, add to the sums; the result divides.
    """
    sums = metric.sums.value

    def update_state(loss, nll, kl):
        n = torch.tensor(float(loss.shape[0]), dtype=loss.dtype, device=loss.device)
        sums.add_(torch.stack([loss.sum(), nll.sum(), kl.sum(), n]).to(sums.dtype))

    def result():
        loss, nll, kl = (sums[:3] / torch.clamp_min(sums[3], 1.0)).unbind()
        return {"loss": loss, "nll": nll, "kl": kl}

    return update_state, result


@functools.cache
def direct_metric_works(device: str = "cpu") -> str:
    """Check once per device that :func:`_direct_metric` gives ELBOMetrics's sums and results exactly."""
    from .models import ELBOMetrics

    try:
        with keras.device(device):
            rng = np.random.default_rng(0)
            ours, theirs = ELBOMetrics(), ELBOMetrics()
            update, result = _direct_metric(ours)
            for n in (5, 3):
                args = [
                    keras.ops.convert_to_tensor(rng.normal(size=n).astype("float32")) for _ in "abc"
                ]
                with torch.no_grad():
                    update(*args)
                    theirs.update_state(*args)
            a, b = result(), theirs.result()
            same = torch.equal(ours.sums.value, theirs.sums.value) and all(
                torch.equal(a[k], b[k]) for k in b
            )
        return "" if same else "its sums or results differ from ELBOMetrics's"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _direct_metrics(vae: keras.Model, device: str) -> Iterator[bool]:
    """Inside the block, ``vae.elbo_metrics`` updates and reports through :func:`_direct_metric`."""
    from .models import ELBOMetrics

    metric = getattr(vae, "elbo_metrics", None)
    cls = type(metric)
    if metric is None or not (
        issubclass(cls, ELBOMetrics)
        and cls.update_state is ELBOMetrics.update_state
        and cls.result is ELBOMetrics.result
    ):
        yield False  # another metric: Keras's own code, nothing to say
        return
    why = direct_metric_works(device)
    if why:
        _warn("the ELBO metrics", why)
        yield False
        return
    attrs = vars(metric)
    attrs["update_state"], attrs["result"] = _direct_metric(metric)
    try:
        yield True
    finally:
        attrs.pop("update_state", None)
        attrs.pop("result", None)


# --------------------------------------------------------------- random draws
def _direct_normal(device: str):
    """``keras.random.normal`` for a ``SeedGenerator`` seed, drawn as Keras's torch backend draws it.

    Keras seeds a new ``torch.Generator`` with the sum of the generator's two
    state numbers (mod 2**32), adds 1 to the second, and draws with
    ``torch.normal``. This does the same with one generator kept for the
    block, without Keras's per-call wrappers (about 0.05 ms a draw). Any other
    call (a seed that is a number or ``None``, another dtype) goes to Keras.
    """
    original = keras.random.normal
    generator = torch.Generator(device=device)
    increments = {}  # (0, 1) per state dtype and device
    dtypes = {None: keras.config.floatx(), "float32": "float32", torch.float32: "float32"}

    def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        if type(seed) is not keras.random.SeedGenerator or dtypes.get(dtype) != "float32":
            return original(shape, mean=mean, stddev=stddev, dtype=dtype, seed=seed)
        state = seed.state.value
        first, second = state.tolist()
        key = (state.dtype, state.device)
        if key not in increments:
            increments[key] = torch.tensor([0, 1], dtype=state.dtype, device=state.device)
        state.add_(increments[key])  # the generator's next state: (first, second + 1)
        generator.manual_seed((first + second) & 0xFFFFFFFF)
        return torch.normal(
            mean, stddev, size=tuple(shape), generator=generator, dtype=torch.float32, device=device
        )

    return normal


@functools.cache
def direct_normal_works(device: str = "cpu") -> str:
    """Check once per device that :func:`_direct_normal` draws what ``keras.random.normal`` draws.

    Returns '' if it does (the same numbers and the same generator state
    after three draws of two shapes), else why not.
    """
    try:
        with keras.device(device):
            ours, theirs = keras.random.SeedGenerator(7), keras.random.SeedGenerator(7)
            normal = _direct_normal(device)
            for shape in [(3, 2), (2, 3, 2), (5,)]:
                a = normal(shape, dtype="float32", seed=ours)
                b = keras.random.normal(shape, dtype="float32", seed=theirs)
                if not (a.device == b.device and a.dtype == b.dtype and torch.equal(a, b)):
                    return "its draws differ from keras.random.normal's"
            if not torch.equal(ours.state.value, theirs.state.value):
                return "its seed generator's state differs from Keras's"
        return ""
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------- keras.ops
_FLOAT32 = (None, "float32", torch.float32)


def _direct_ops(device: str) -> dict:
    """``keras.ops.convert_to_tensor``, ``shape``, ``sum``, ``mean`` and ``exp`` on float32 tensors.

    For a float32 torch tensor on ``device`` each is the one torch call that
    Keras's torch backend ends in (``convert_to_tensor`` without another dtype
    returns the tensor itself), without Keras's dispatch around it (a check for
    symbolic tensors, a device and dtype check, a cast to the same dtype: a few
    microseconds per call, a dozen calls per step). Any other argument goes to
    Keras's own function. Returns {name: function}.
    """
    where = torch.device(device)
    keras_ops = {
        name: getattr(keras.ops, name)
        for name in ("convert_to_tensor", "shape", "sum", "mean", "exp")
    }

    def plain(x):
        return type(x) is torch.Tensor and x.dtype == torch.float32 and x.device == where

    def convert_to_tensor(x, dtype=None, sparse=None, ragged=None):
        if plain(x) and dtype in _FLOAT32 and not sparse and not ragged:
            return x
        return keras_ops["convert_to_tensor"](x, dtype=dtype, sparse=sparse, ragged=ragged)

    def shape(x):
        return tuple(x.shape) if plain(x) else keras_ops["shape"](x)

    def ops_sum(x, axis=None, keepdims=False):
        if not plain(x) or axis in ((), []):
            return keras_ops["sum"](x, axis=axis, keepdims=keepdims)
        return torch.sum(x) if axis is None else torch.sum(x, axis=axis, keepdim=keepdims)

    def ops_mean(x, axis=None, keepdims=False):
        if not plain(x) or axis in ((), []):
            return keras_ops["mean"](x, axis=axis, keepdims=keepdims)
        return torch.mean(x, (axis,) if isinstance(axis, int) else axis, keepdims)

    def exp(x):
        return torch.exp(x) if plain(x) else keras_ops["exp"](x)

    return {
        "convert_to_tensor": convert_to_tensor,
        "shape": shape,
        "sum": ops_sum,
        "mean": ops_mean,
        "exp": exp,
    }


@functools.cache
def direct_ops_work(device: str = "cpu") -> str:
    """Check once per device that :func:`_direct_ops` gives what ``keras.ops`` gives, bit for bit.

    Returns '' if it does (values, dtype, device and shape, for several axes),
    else why not.
    """
    try:
        with keras.device(device):
            rng = np.random.default_rng(0)
            x = keras.ops.convert_to_tensor(rng.normal(size=(4, 3, 5)).astype("float32"))
            ours = _direct_ops(device)
            calls = [
                ("convert_to_tensor", (x,), {}),
                ("convert_to_tensor", (x,), {"dtype": "float32"}),
                ("convert_to_tensor", (x,), {"dtype": torch.float32}),
                ("convert_to_tensor", (0.5,), {"dtype": torch.float32}),
                ("exp", (x,), {}),
                *[
                    (name, (x,), {"axis": axis, "keepdims": keep})
                    for name in ("sum", "mean")
                    for axis in (None, 0, -1, (1, 2), [0, 2], ())
                    for keep in (False, True)
                ],
            ]
            for name, args, kwargs in calls:
                a = ours[name](*args, **kwargs)
                b = getattr(keras.ops, name)(*args, **kwargs)
                if not (
                    a.dtype == b.dtype
                    and a.device == b.device
                    and a.shape == b.shape
                    and torch.equal(a, b)
                ):
                    return f"keras.ops.{name}(x, {kwargs}) differs from Keras's"
            if ours["shape"](x) != keras.ops.shape(x):
                return "keras.ops.shape differs from Keras's"
        return ""
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------ weight lookups
def _value_owner(variable: keras.Variable) -> type:
    """The class in ``variable``'s MRO that defines ``value`` (Keras's torch ``Variable``)."""
    return next(c for c in type(variable).__mro__ if "value" in vars(c))


def _direct_value(owner: type) -> property:
    """``Variable.value`` that returns the variable's torch tensor itself when Keras's would.

    Keras's torch ``Variable.value`` asks for three scopes on every call
    (stateless, autocast, device, through a function each) and returns the
    variable's own tensor when none is set: about 2 microseconds, a dozen
    calls a step (the train step's ``v.value.grad`` for each weight). This
    reads the three slots of Keras's global state directly and returns the
    tensor when all are empty and the variable is initialised; otherwise
    Keras's own property answers.
    """
    keras_value = owner.value
    state = global_state.GLOBAL_STATE_TRACKER

    def value(self):
        if (
            self._value is not None
            and getattr(state, "stateless_scope", None) is None
            and getattr(state, "autocast_scope", None) is None
            and getattr(state, "torch_device", None) is None
        ):
            return self._value
        return keras_value.fget(self)

    return property(value, doc=keras_value.__doc__)


@functools.cache
def direct_value_works(device: str = "cpu") -> str:
    """Check once per device that :func:`_direct_value` gives what ``Variable.value`` gives.

    Returns '' if it does (the same tensor outside any scope; Keras's answer
    inside a stateless scope, an autocast scope and a meta-device scope, each of
    which changes that answer), else why not.
    """
    from keras.src.backend.common.stateless_scope import StatelessScope
    from keras.src.backend.common.variables import AutocastScope

    try:
        with keras.device(device):
            variable = keras.Variable(np.arange(6, dtype="float32").reshape(2, 3))
            other = keras.ops.ones((2, 3))
        owner = _value_owner(variable)
        ours = _direct_value(owner).fget
        if ours(variable) is not owner.value.fget(variable):
            return "outside any scope it is not Keras's tensor"
        scopes = {
            "a stateless scope": lambda: StatelessScope(state_mapping=[(variable, other)]),
            "an autocast scope": lambda: AutocastScope("float16"),
            "a meta-device scope": lambda: keras.device("meta"),  # Keras's symbolic stand-in
        }
        for where, scope in scopes.items():
            with scope():
                a, b = ours(variable), owner.value.fget(variable)
            if not (a.dtype == b.dtype and a.device == b.device and a.shape == b.shape):
                return f"inside {where} it differs from Keras's"
            if a.device.type != "meta" and not torch.equal(a, b):
                return f"inside {where} it differs from Keras's"
        return ""
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _all_built(vae: keras.Model) -> bool:
    """Whether the model and every layer in it are built."""
    return all(layer.built for layer in vae._flatten_layers(include_self=True))


def _lean_class(vae: keras.Model) -> tuple[type | None, str]:
    """A subclass of ``type(vae)`` whose ``trainable_weights`` and ``zero_grad`` skip the walks.

    Each step, Keras's ``trainable_weights`` walks every layer's weights (and
    de-duplicates them) and torch's ``zero_grad`` every module's parameters:
    tens of microseconds. The subclass keeps the weights, their ``trainable``
    flags and the parameters as they are when it is made (at the start of
    ``fit``); its ``trainable_weights`` gives the kept list while the model's
    and every weight's flag are as they were, and Keras's answer otherwise
    (a layer frozen or unfrozen by a callback); its ``zero_grad()`` sets each
    kept parameter's ``grad`` to ``None``, as torch's does. It does not see
    weights a model gains or loses during a ``fit`` (Keras's functional models
    accept new layers after they are built, and ``quantize`` replaces
    variables): Keras's ``apply`` would refuse them, this would leave them
    out. Add them before ``fit``. Returns (the class, '') or (None, why not):
    a model not yet built, not trainable, or whose class has its own
    ``weights``, ``trainable_weights``, ``zero_grad`` or ``parameters``.
    """
    cls = type(vae)
    keras_weights = keras.layers.Layer.trainable_weights
    own = [
        name
        for name, theirs in (
            ("trainable_weights", keras_weights),
            ("weights", keras.layers.Layer.weights),
            ("zero_grad", torch.nn.Module.zero_grad),
            ("parameters", torch.nn.Module.parameters),
            ("named_parameters", keras.layers.Layer.named_parameters),
        )
        if getattr(cls, name) is not theirs
    ]
    if own:
        return None, f"{cls.__name__} has its own {', '.join(own)}"
    if not _all_built(vae):
        return None, "a layer of the model is not built"
    if not vae.trainable:
        return None, "the model is not trainable"
    weights = vae.weights
    flags = [w.trainable for w in weights]
    trainable = vae.trainable_weights
    parameters = list(vae.parameters())

    def trainable_weights(self):
        if self is vae and self.trainable and [w.trainable for w in weights] == flags:
            return list(trainable)
        return keras_weights.fget(self)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if self is not vae or not set_to_none:
            return torch.nn.Module.zero_grad(self, set_to_none)
        for p in parameters:
            p.grad = None

    lean = type(
        cls.__name__,
        (cls,),
        {
            "trainable_weights": property(trainable_weights, doc=keras_weights.__doc__),
            "zero_grad": zero_grad,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
        },
    )
    return lean, ""


def _lean_or_warn(vae: keras.Model) -> type | None:
    """:func:`_lean_class`'s class, or ``None`` after a :class:`FastPathWarning` saying why."""
    lean, why = _lean_class(vae)
    if lean is None:
        _warn("the VAE's trainable_weights and zero_grad in the steps", why)
    return lean


# ----------------------------------------------------------------- fused Adam
def _fused_update(optimizer: keras.optimizers.Optimizer):
    """A replacement for the torch backend Adam's ``_parallel_update_step``: one ``torch._fused_adam_``.

    Keras's Adam, with g the gradient and t the step:
    m_t = b1 m + (1 - b1) g, v_t = b2 v + (1 - b2) g^2,
    w_t = w - lr sqrt(1 - b2^t) / (1 - b1^t) * m_t / (sqrt(v_t) + eps).
    PyTorch's kernel puts epsilon inside the bias correction,
    sqrt(v_t) / sqrt(1 - b2^t) + eps', so eps' = eps / sqrt(1 - b2^t) gives
    Keras's update to floating-point rounding.
    """
    slots: dict = {}

    def update(grads, variables, learning_rate):
        key = tuple(id(v) for v in variables)
        if key not in slots:
            index = [optimizer._get_variable_index(v) for v in variables]
            slots.clear()
            slots[key] = (
                [v.value for v in variables],
                [optimizer._momentums[i].value for i in index],
                [optimizer._velocities[i].value for i in index],
            )
        params, m, v = slots[key]
        step = float(optimizer.iterations.value) + 1.0
        steps = [torch.tensor(step, dtype=torch.float32, device=params[0].device)] * len(params)
        torch._fused_adam_(
            params,
            list(grads),
            m,
            v,
            [],
            steps,
            lr=float(learning_rate),
            beta1=optimizer.beta_1,
            beta2=optimizer.beta_2,
            weight_decay=0.0,
            eps=optimizer.epsilon / math.sqrt(1.0 - optimizer.beta_2**step),
            amsgrad=False,
            maximize=False,
        )

    return update


# The settings of Keras's Adam (its ``get_config()``) that the fused update supports, with the
# values it supports; None: any value. A setting not listed (say, one a later Keras adds) turns
# the fused update off, so a new option can never be silently ignored.
_ADAM_SETTINGS = {
    "name": None,
    "learning_rate": None,  # a number or a schedule: Keras evaluates it and hands the value over
    "beta_1": None,
    "beta_2": None,
    "epsilon": None,
    "amsgrad": (False,),
    "weight_decay": (None, 0, 0.0),
    "clipnorm": (None,),
    "clipvalue": (None,),
    "global_clipnorm": (None,),
    "use_ema": (False,),
    "ema_momentum": None,  # unused without EMA
    "ema_overwrite_frequency": None,  # unused without EMA
    "loss_scale_factor": (None,),
    "gradient_accumulation_steps": (None,),
}


@functools.cache
def _keras_adam_class() -> type:
    """The class ``keras.optimizers.Adam(...)`` makes: the backend's own subclass of it."""
    return type(keras.optimizers.Adam())


def _fusable(optimizer) -> str:
    """Why ``optimizer`` cannot take the fused update ('' if it can): Keras's Adam with allow-listed settings only."""
    if type(optimizer) is not _keras_adam_class():
        return f"the optimizer is {type(optimizer).__qualname__}, not Keras's Adam itself (a subclass may change the update)"
    try:
        config = optimizer.get_config()
    except Exception as exc:
        return f"its settings cannot be read ({type(exc).__name__}: {exc})"
    for key, value in config.items():
        if key not in _ADAM_SETTINGS:
            return f"setting {key}={value!r} is not one the fused update knows"
        allowed = _ADAM_SETTINGS[key]
        if allowed is not None and not any(
            value is a or (type(value) is type(a) and value == a) for a in allowed
        ):
            return f"setting {key}={value!r} is on (the fused update supports {' or '.join(map(repr, allowed))})"
    if not callable(getattr(optimizer, "_parallel_update_step", None)):
        return "Keras's torch Adam has no _parallel_update_step to replace"
    return ""


@functools.cache
def fused_adam_works(device: str = "cpu") -> str:
    """Check once per device, on three tiny weights, that the fused update is Keras's Adam.

    Returns '' if it is, else why not. ``device`` is a torch device name
    (``"cpu"``, ``"cuda:0"``): the kernel, and whether it exists at all,
    differ between devices.
    """
    try:
        with keras.device(device):
            rng = np.random.default_rng(0)
            shapes = [(5, 3), (3,), (2, 2)]
            inits = [rng.normal(size=s).astype("float32") for s in shapes]
            grads = [
                [keras.ops.convert_to_tensor(rng.normal(size=s).astype("float32")) for s in shapes]
                for _ in range(3)
            ]
            results, calls = [], []
            for fused in (False, True):
                opt = keras.optimizers.Adam(1e-2)
                why = _fusable(opt)
                if why:
                    return why
                variables = [keras.Variable(w) for w in inits]
                opt.build(variables)
                if fused:
                    update = _fused_update(opt)

                    def counted(*args, update=update):
                        calls.append(1)
                        return update(*args)

                    vars(opt)["_parallel_update_step"] = counted
                with torch.no_grad():
                    for g in grads:
                        opt.apply(g, variables)
                results.append([v.value.detach().clone() for v in variables])
        if str(results[1][0].device) != str(torch.device(device)):
            return f"the check ran on {results[1][0].device}, not on {device}"
        if len(calls) != len(grads):
            return "Keras's Adam no longer calls _parallel_update_step"
        if not all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(*results)):
            return "the fused kernel does not give Keras's update"
        return ""
    except Exception as exc:  # e.g. a torch without the kernel for this device
        return f"{type(exc).__name__}: {exc}"


def _device_of(vae: keras.Model) -> str:
    weights = vae.trainable_weights
    return str(weights[0].value.device) if weights else str(keras.ops.convert_to_tensor(0.0).device)


@contextlib.contextmanager
def _fused(optimizer, device: str) -> Iterator[bool]:
    why = _fusable(optimizer) or fused_adam_works(device)
    if why:
        _warn("the Adam update", why)
        yield False
        return
    update = _fused_update(optimizer)
    vars(optimizer)["_parallel_update_step"] = update
    vars(optimizer)["apply"] = _lean_apply(optimizer, update)
    try:
        yield True
    finally:
        vars(optimizer).pop("_parallel_update_step", None)
        vars(optimizer).pop("apply", None)


def _lean_apply(optimizer, update):
    """``optimizer.apply`` for the common call, straight to the fused update; else Keras's own.

    With every setting on the allow-list, Keras's ``apply`` does three things that matter:
    check the variables, run the update with the current learning rate, add one to
    ``iterations``. This does the same for a call with gradients for every one of the
    variables the optimizer was built on, in order, none ``None``, none with a constraint
    or ``overwrite_with_gradient``; any other call goes to Keras's ``apply``.
    """
    keras_apply = optimizer.apply
    plain: dict = {}

    def apply(grads, trainable_variables=None):
        if trainable_variables is None:
            return keras_apply(grads, trainable_variables)
        variables = list(trainable_variables)
        key = tuple(map(id, variables))
        if not optimizer.built:  # Keras's apply builds it
            return keras_apply(grads, variables)
        if key not in plain:
            plain.clear()
            plain[key] = list(key) == [id(v) for v in optimizer._trainable_variables] and all(
                v.constraint is None and not v.overwrite_with_gradient for v in variables
            )
        if not plain[key] or len(grads) != len(key) or any(g is None for g in grads):
            return keras_apply(grads, variables)
        with torch.no_grad():
            update(grads, variables, optimizer.learning_rate)
            optimizer.iterations.value.add_(1)

    return apply


# ----------------------------------------------------------------- epoch loop
def _lean_fit_why_not(vae: keras.Model, x) -> str:
    """Why :func:`fit` hands ``x`` to Keras's ``fit`` ('' if it runs its own loop)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        return "the images are not a float32 NumPy array"
    if not (x.flags.c_contiguous and x.flags.writeable):
        return "the array is not C-contiguous and writeable (torch would copy or warn)"
    if _device_of(vae) != "cpu":
        return "the model is not on the CPU (the loop was measured and tested on the CPU only)"
    if not (vae.built and vae.compiled):  # Keras's fit builds it, or says what is missing
        return "the model is not built and compiled"
    if vae.jit_compile is True or vae.steps_per_execution != 1:
        return "the model is compiled with jit_compile or steps_per_execution"
    if keras.config.max_epochs() or keras.config.max_steps_per_epoch():
        return "keras.config.max_epochs or max_steps_per_epoch is set"
    return ""


def _hooked(callbacks, *hooks) -> list:
    """The callbacks in the ``CallbackList`` whose ``hooks`` (any of them) are not Callback's no-op.

    Keras's own rule (``CallbackList``'s ``utils.is_default``): a hook counts unless it is the
    base class's method, marked ``_is_default``; so a hook set on the instance, as
    ``LambdaCallback`` sets it, counts. Keras's progress bar at ``verbose=2`` (one line per
    epoch) is left out: its batch hook only counts the batches, and its epoch line takes the
    count from ``steps``.
    """
    return [
        cb
        for cb in callbacks.callbacks
        if any(not getattr(getattr(cb, hook), "_is_default", False) for hook in hooks)
        and not (type(cb) is keras.callbacks.ProgbarLogger and cb.verbose == 2)
    ]


def _python_logs(logs) -> dict:
    """The logs as callbacks see them: each number a Python float (``CallbackList``'s rule)."""
    out = {}
    for key, value in sorted((logs or {}).items()):
        if isinstance(value, dict):
            out.update(_python_logs(value))
            continue
        with contextlib.suppress(TypeError, ValueError, RuntimeError):  # not a number: as it is
            value = float(value)
        out[key] = value
    return out


def fit(vae, x, *, epochs, initial_epoch, batch_size, x_val, callbacks, verbose):
    """``vae.fit(x, ..., shuffle=True)`` on a float32 NumPy array ``x``, in a leaner loop.

    Keras's ``fit`` loop (``backend/torch/trainer.py``) for this one kind of call,
    with the same calls in the same order: a ``keras.callbacks.CallbackList`` (with
    Keras's ``History`` and, unless ``verbose=0``, its progress bar), ``train_step``
    once per batch, the epoch's metrics, ``evaluate`` on ``x_val``. It leaves out
    two per-batch costs. The torch ``DataLoader`` that Keras builds over the array
    turns each batch's indices into a Python list, slices the NumPy array with it and
    converts the slice; here the array is one tensor (the same memory) gathered by a
    slice of the epoch's permutation. And the batch hooks are called only on the
    callbacks that have them, in this thread, with the logs as Python floats, where
    ``CallbackList`` hands the batch ends of "async-safe" callbacks (the command
    line's) to a thread pool: here they run before the next step, so a callback that
    stops training stops it at that step.

    The permutation is the one Keras's ``RandomSampler`` draws (``torch.randperm`` on
    a generator seeded from torch's global generator, after the draw each new
    ``DataLoader`` iterator makes), so the batches, and so the weights and logs, are
    ``vae.fit``'s bit for bit. That rests on how Keras 3.15 and torch 2.13 (the
    pinned versions) seed the shuffle, and is not checked at run time:
    ``tests/test_fast.py`` checks it at the pinned versions. Any other call (not a
    C-contiguous, writeable float32 array; a model not on the CPU, not built and
    compiled, or with ``jit_compile`` or ``steps_per_execution``; Keras's
    ``max_epochs`` or ``max_steps_per_epoch`` set) goes to ``vae.fit``.
    """
    validation = (x_val,) if x_val is not None else None
    if _lean_fit_why_not(vae, x):
        return vae.fit(
            x,
            epochs=epochs,
            initial_epoch=initial_epoch,
            batch_size=batch_size,
            validation_data=validation,
            shuffle=True,
            callbacks=callbacks,
            verbose=verbose,
        )
    images = torch.as_tensor(x)  # the array's own memory
    n = len(x)
    steps = math.ceil(n / batch_size)
    callbacks = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=steps,
        model=vae,
    )

    # Batch hooks only for the callbacks that have them (the command line's NaN check does; Keras's
    # History has none), called in turn in this thread: CallbackList would hand the batch-end
    # hooks to a thread pool, a cost on two cores rather than a saving.
    begin = _hooked(callbacks, "on_train_batch_begin", "on_batch_begin")
    end = _hooked(callbacks, "on_train_batch_end", "on_batch_end")

    def global_draw():
        """The draw from torch's global generator that each new DataLoader iterator makes, and
        its RandomSampler's seed. Keras's EpochIterator._enumerate_iterator makes a new iterator
        when an epoch starts and another when it has run all its batches."""
        return int(torch.empty((), dtype=torch.int64).random_().item())

    if vae.optimizer is not None and not vae.optimizer.built:
        vae.optimizer.build(vae.trainable_variables)  # as Keras's fit does before the first step
    vae.stop_training = False
    training_logs = {}
    callbacks.on_train_begin()
    # Keras's fit resumes where a callback says (BackupAndRestore sets this in on_train_begin).
    initial_epoch = getattr(vae, "_initial_epoch", None) or initial_epoch
    for epoch in range(initial_epoch, epochs):
        vae.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        vae.train()
        global_draw()  # the epoch's DataLoader iterator
        order = torch.randperm(n, generator=torch.Generator().manual_seed(global_draw()))
        train_step, logs = vae.train_step, {}
        for step in range(steps):
            batch = torch.index_select(  # as Keras's loop, the batch before the batch hooks
                images, 0, order[step * batch_size : (step + 1) * batch_size]
            )
            for cb in begin:
                cb.on_train_batch_begin(step, logs={})
            logs = train_step((batch,))
            if end:
                python_logs = _python_logs(logs)
                for cb in end:
                    cb.on_train_batch_end(step, logs=python_logs)
            if vae.stop_training:
                break
        else:
            global_draw()  # the iterator Keras makes at the end of a full epoch
        metric_logs = vae.get_metrics_result()
        epoch_logs = dict(
            metric_logs if isinstance(logs, dict) and set(logs) == set(metric_logs) else logs
        )
        vae.eval()
        if validation is not None:
            val_logs = vae.evaluate(
                x_val, batch_size=batch_size, callbacks=callbacks, return_dict=True
            )
            epoch_logs.update({f"val_{name}": value for name, value in val_logs.items()})
        callbacks.on_epoch_end(epoch, epoch_logs)
        training_logs = epoch_logs
        if vae.stop_training:
            break
    if epochs > 0:
        vae.optimizer.finalize_variable_values(vae.trainable_weights)
    callbacks.on_train_end(logs=training_logs)
    return vae.history


# --------------------------------------------------------------------- switch
@contextlib.contextmanager
def enabled(
    vae: keras.Model,
    networks: bool = True,
    adam: bool = True,
    draws: bool = True,
    metrics: bool = True,
    ops: bool = True,
    weights: bool = True,
) -> Iterator[dict[str, bool]]:
    """Inside the block, ``vae``'s encoder and decoder run as chains and its Adam is fused.

    ``vae`` must be compiled. ``networks=False`` leaves the encoder and decoder to Keras,
    ``adam=False`` the update, ``draws=False`` the steps' ``keras.random.normal``,
    ``metrics=False`` the ELBO metrics, ``ops=False`` the steps' ``keras.ops``,
    ``weights=False`` the steps' weight lookups (what ``benchmarks/bench_steps.py``
    compares). Yields which parts are on, e.g. ``{"encoder": True, "decoder": True,
    "adam": True, "draws": True, "ops": True, "weights": True, "metrics": True}``; a part asked for
    that is off has said why in a :class:`FastPathWarning`. Everything is
    put back on leaving the block, also after an error.
    """
    device = _device_of(vae)
    with contextlib.ExitStack() as stack:
        nets = {
            name: stack.enter_context(_chained(getattr(vae, name), name)) if networks else None
            for name in ("encoder", "decoder")
        }
        functions = {}
        if draws:
            why = direct_normal_works(device)
            if why:
                _warn("keras.random.normal in the steps", why)
            else:
                functions[keras.random, "normal"] = _direct_normal(device)
        if ops:
            why = direct_ops_work(device)
            if why:
                _warn("keras.ops in the steps", why)
            else:
                functions.update(((keras.ops, k), f) for k, f in _direct_ops(device).items())
        value_key, lean = None, None
        if weights and isinstance(vae, keras.layers.Layer) and vae.weights:
            why = direct_value_works(device)
            if why:
                _warn("Variable.value in the steps", why)
            else:
                owner = _value_owner(vae.weights[0])
                value_key = (owner, "value")
                functions[value_key] = _direct_value(owner)
                lean = (
                    _lean_or_warn(vae) if _all_built(vae) else functools.partial(_lean_or_warn, vae)
                )
        stand_ins = {name: net for name, net in nets.items() if net is not None}
        stack.enter_context(_direct_steps(vae, stand_ins, functions, lean))
        on = {name: net is not None for name, net in nets.items()}
        on["adam"] = adam and stack.enter_context(_fused(vae.optimizer, device))
        on["draws"] = (keras.random, "normal") in functions
        on["ops"] = (keras.ops, "sum") in functions
        # for a model that fit builds, the lean class is made (or warned against) at the first step
        on["weights"] = lean is not None
        on["metrics"] = metrics and stack.enter_context(_direct_metrics(vae, device))
        yield on


__all__ = [
    "FastPathWarning",
    "enabled",
    "fit",
    "direct_ops_work",
    "direct_value_works",
    "chain_of",
    "fused_adam_works",
    "direct_normal_works",
    "direct_metric_works",
]
