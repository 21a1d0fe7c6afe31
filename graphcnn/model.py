"""Model: a named set of inputs and outputs over the DSL recipe, its parameters, and the
translation of the recipe into an IR graph for a batch size and a mode."""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from graphcnn.dsl import Parameter, Tensor, topological_order
from graphcnn.ir.graph import Graph, Value


class Model:
    """A model built with the DSL.

    >>> import graphcnn as gc
    >>> from graphcnn import nn
    >>> x = gc.Input((4,), name="x")
    >>> model = gc.Model(inputs=x, outputs=nn.Linear(4, 2)(x), name="tiny")
    >>> model.num_parameters()
    10
    """

    # set by ONNX import for a file whose graph holds only at its own batch size
    fixed_batch: int | None = None

    def __init__(self, inputs: Tensor | Sequence[Tensor],
                 outputs: Tensor | Sequence[Tensor] | Mapping[str, Tensor],
                 name: str = "model") -> None:
        self.inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        if isinstance(outputs, Mapping):   # named outputs, as Keras' dict outputs
            self.output_names = [str(k) for k in outputs]
            self.outputs = list(outputs.values())
        else:
            self.outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
            self.output_names = [t.name or f"output{i}" for i, t in enumerate(self.outputs)]
        if len(set(self.output_names)) != len(self.output_names):
            raise ValueError(f"model {name!r}: output names must be unique, got "
                             f"{self.output_names}")
        self.name = name
        self.tensors = topological_order(self.outputs)
        used_inputs = [t for t in self.tensors if t.op == "input"]
        missing = [t.name for t in used_inputs if all(t is not i for i in self.inputs)]
        if missing:
            raise ValueError(f"model {name!r}: outputs depend on inputs {missing} that are not "
                             f"in `inputs`")
        names = [t.name for t in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"model {name!r}: input names must be unique, got {names}")
        params = sorted({id(t.parameter): t.parameter for t in self.tensors
                         if t.parameter is not None}.values(), key=lambda p: p.order)
        # A parameter reached inside another model called as a layer (a Sequential model
        # in a bigger one, e.g. a GAN's z -> generator -> discriminator) is named
        # "<that model's name>.<its name there>": two models' "main.0.weight" stay apart,
        # and the arrays are the same (shared) storage.
        scopes: dict[int, Model] = {}
        for t in self.tensors:
            if t.parameter is not None and id(t.parameter) not in scopes:
                outer = [m for m in t.scope if m is not self]
                if outer:
                    scopes[id(t.parameter)] = outer[0]
        self._param_names = _name_parameters(params, scopes)
        self._params = {self._param_names[id(p)]: p for p in params}
        self.built_model = True   # from now on, calling it as a layer scopes its names

    # ---- parameters -------------------------------------------------------------------
    def parameters(self) -> dict[str, np.ndarray]:
        """Name -> array, in creation order, PyTorch layouts. The arrays are the live
        storage: updating one in place updates the model."""
        return {name: p.data for name, p in self._params.items()}

    def trainable_parameters(self) -> dict[str, np.ndarray]:
        return {name: p.data for name, p in self._params.items() if p.trainable}

    def num_parameters(self, trainable_only: bool = False) -> int:
        return int(sum(p.data.size for p in self._params.values()
                       if p.trainable or not trainable_only))

    def load_parameters(self, values: dict[str, np.ndarray]) -> None:
        """Copy arrays into the model; names and shapes must match exactly."""
        missing = sorted(set(self._params) - set(values))
        unexpected = sorted(set(values) - set(self._params))
        if missing or unexpected:
            raise KeyError(f"load_parameters: missing {missing}, unexpected {unexpected}")
        for name, value in values.items():
            target = self._params[name].data
            value = np.asarray(value)
            if value.shape != target.shape:
                raise ValueError(f"load_parameters: {name!r} has shape {value.shape}, "
                                 f"the model expects {target.shape}")
            target[...] = value
        return None

    def parameter_name(self, parameter: Parameter) -> str:
        return self._param_names[id(parameter)]

    # ---- IR ---------------------------------------------------------------------------
    def graph(self, batch_size: int = 1, *, training: bool = False,
              dtype: str = "float32", frozen: bool | None = None,
              sync_batchnorm: int = 0) -> Graph:
        """The IR graph for a batch size and mode.

        Inference: parameters become constants (so they can be folded) and dropout
        disappears. Training: parameters are `param` nodes fed from the model at each
        call, batch norm uses batch statistics, and the running-statistic updates are
        extra outputs named "state:<parameter name>". `frozen=False` keeps parameters as
        fed `param` nodes in inference too (for evaluating a model while it trains).
        `sync_batchnorm=W` (training, W >= 1 ranks): batch norm normalizes with the
        statistics of the global batch of W ranks, averaged inside the step by
        `allreduce` nodes (docs/distributed.md, synchronized batch norm).
        """
        if frozen is None:
            frozen = not training
        from graphcnn.mode_rules import MODE_RULES, LoweringContext

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.fixed_batch is not None and batch_size != self.fixed_batch:
            raise ValueError(f"model {self.name!r} was imported at its file's fixed batch "
                             f"size {self.fixed_batch} (its graph mixes the batch with other "
                             f"axes); compile it with batch_size={self.fixed_batch}, not "
                             f"{batch_size}")
        g = Graph(self.name)
        if sync_batchnorm < 0:
            raise ValueError(f"sync_batchnorm must be a number of ranks >= 0, got "
                             f"{sync_batchnorm}")
        ctx = LoweringContext(g, training, dtype, sync_batchnorm if training else 0)
        env: dict[int, Value] = {}
        for t in self.tensors:
            if t.op == "input":
                in_dtype = dtype if t.type.is_float else t.dtype
                env[t.id] = g.input(t.name, (batch_size,) + t.type.shape[1:], in_dtype)
            elif t.op == "param":
                p = t.parameter
                assert p is not None, "a param tensor is made with its Parameter"
                name = self.parameter_name(p)
                if not frozen:
                    env[t.id] = g.param(name, p.shape, dtype, trainable=p.trainable)
                else:
                    env[t.id] = g.constant(p.data.astype(dtype), name=name)
            elif t.op == "constant":
                env[t.id] = g.constant(t.attrs["value"].astype(dtype))
            else:
                args = [env[i.id] for i in t.inputs]
                rule: Callable[..., Value] | None = MODE_RULES.get(t.op)
                if rule is not None:
                    env[t.id] = rule(ctx, t, args)
                else:
                    env[t.id] = g.add(t.op, args, loc=t.loc, **t.attrs)
        names = list(self.output_names)
        values = [env[t.id] for t in self.outputs]
        for param, value in ctx.state_updates.items():
            names.append(f"state:{self.parameter_name(param)}")
            values.append(value)
        g.set_outputs(values, names)
        # before any pass folds a constant or a backend allocates an arena for them
        from graphcnn.limits import check_graph
        check_graph(g, hint=f", or compile with a batch size below {batch_size}"
                    if batch_size > 1 else "")
        return g

    # ---- display ----------------------------------------------------------------------
    def summary(self, print_fn: Callable[[str], Any] | None = print) -> str:
        """A table of layers, output shapes and parameter counts (like Keras)."""
        rows = [("Layer (type)", "Output shape", "Param #")]
        counted: set[int] = set()
        for t in self.tensors:
            if t.op in ("param", "constant"):
                continue
            if t.op == "input":
                rows.append((f"{t.name} (Input)", str(t.shape), "0"))
            elif t.layer_call is not None:
                layer = t.layer_call
                count = 0
                for p in layer.own_parameters():
                    if id(p) not in counted:
                        counted.add(id(p))
                        count += p.data.size
                label = f"{layer.name or ''} ({type(layer).__name__})".strip()
                rows.append((label, str(t.shape), f"{count:,}"))
            elif not t.inside_layer:
                rows.append((f"({t.op})", str(t.shape), "0"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        rule = "-" * (sum(widths) + 4)
        lines = [f'Model: "{self.name}"', rule]
        for i, r in enumerate(rows):
            lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}")
            if i == 0:
                lines.append(rule)
        lines += [rule, f"Total params: {self.num_parameters():,}",
                  f"Trainable params: {self.num_parameters(trainable_only=True):,}", rule]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        return (f"Model({self.name!r}, inputs={[t.name for t in self.inputs]}, "
                f"parameters={self.num_parameters():,})")


def _name_parameters(params: list[Parameter], scopes: dict[int, Model] | None = None
                     ) -> dict[int, str]:
    """'<layer name>.<attribute>'; unnamed layers get '<kind>_<k>' in creation order;
    a parameter without a layer keeps its own name (`attr`), else 'param_<k>'; a
    parameter in `scopes` (id -> the model called as a layer it was reached in) is
    '<that model's name>.<its name in that model>'."""
    names: dict[int, str] = {}
    counts: Counter[str] = Counter()
    layer_names: dict[int, str] = {}
    for p in params:
        if scopes and id(p) in scopes:
            inner = scopes[id(p)]
            names[id(p)] = f"{inner.name}.{inner.parameter_name(p)}"
            continue
        owner = p.owner
        if owner is None:  # a free parameter (ONNX initializers): its attr is its full name
            names[id(p)] = p.attr or f"param_{len(names)}"
            continue
        if id(owner) not in layer_names:
            if owner.name:
                layer_names[id(owner)] = owner.name
            else:
                kind = type(owner).__name__.lower()
                layer_names[id(owner)] = f"{kind}_{counts[kind]}"
                counts[kind] += 1
        names[id(p)] = f"{layer_names[id(owner)]}.{p.attr}"
    if len(set(names.values())) != len(names):
        dup = [n for n, c in Counter(names.values()).items() if c > 1]
        raise ValueError(f"two parameters share the name(s) {dup}: give the layers distinct names")
    return names
