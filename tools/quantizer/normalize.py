"""Normalisation passes of the front end: each export form of a supported layer rewritten into the one form that
:mod:`tools.quantizer.frontend` imports.

Exporters write one network in many ways. torch's legacy exporter writes a global average pool as GlobalAveragePool,
``torch.flatten`` as Flatten and ReLU6's bounds as Constant nodes; the dynamo exporter writes ReduceMean over H and W,
a Reshape and initializers; ``x.mean((2, 3))`` is a ReduceMean without keepdims, ``nn.AvgPool2d(7)`` on a 7x7 map an
AveragePool over the whole map, ``squeeze`` a Squeeze, ``x.view(x.size(0), -1)`` a Reshape of a computed shape,
a hand-written ``x @ W.T + b`` a MatMul and an Add, and the legacy exporter's HardSwish before opset 14
``x * HardSigmoid(x)``. As hls4ml's optimizer passes do, each pass of :data:`PASSES`
rewrites one form into the canonical one, on a copy of the model, in that order. Every rewrite computes the same float function, so every form of one network gives the same IR
and the same integers. A node that no pass recognises is left as it is: the importer's op check then refuses it with
a one-line error that says what is supported instead.

Shapes come from ONNX shape inference, run before each pass on the model as rewritten so far (a pass that needs a
shape it cannot find leaves the node alone).
"""

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["PASSES", "normalize", "constants_to_initializers", "drop_identity", "reduce_mean_to_global_pool",
           "whole_map_average_pool_to_global", "drop_unused_count_include_pad", "squeeze_to_flatten",
           "computed_shape_to_constant", "reshape_to_flatten", "matmul_add_to_gemm", "hard_sigmoid_mul_to_hard_swish"]


class _Model:
    """A copy of an ONNX model being rewritten: its nodes, constants, inferred shapes and fresh names."""

    def __init__(self, model):
        self.model = onnx.ModelProto()
        self.model.CopyFrom(model)
        self.graph = self.model.graph
        self.shapes = {}
        self._names = {name for node in self.graph.node for name in (*node.input, *node.output, node.name)}
        self._names.update(tensor.name for tensor in self.graph.initializer)

    @property
    def nodes(self):
        return list(self.graph.node)

    def set_nodes(self, nodes):
        del self.graph.node[:]
        self.graph.node.extend(nodes)

    def constant(self, name):
        """The value of initializer ``name``, or ``None`` when it is not one."""
        for tensor in self.graph.initializer:
            if tensor.name == name:
                return numpy_helper.to_array(tensor)
        return None

    def add_constant(self, name, array):
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(array), name))
        self._names.add(name)

    def consumers(self, name):
        """Nodes reading tensor ``name``."""
        return [node for node in self.graph.node if name in node.input]

    def is_output(self, name):
        return any(output.name == name for output in self.graph.output)

    def fresh(self, base):
        """A tensor or node name not used in the model yet, derived from ``base``."""
        name, count = base, 0
        while name in self._names:
            count += 1
            name = f"{base}_{count}"
        self._names.add(name)
        return name

    def rename_uses(self, old, new):
        """Make every node and graph output that reads tensor ``old`` read ``new``."""
        for node in self.graph.node:
            for index, name in enumerate(node.input):
                if name == old:
                    node.input[index] = new
        for output in self.graph.output:
            if output.name == old:
                output.name = new

    def axes(self, node):
        """A reduction's or Squeeze's axes, from the attribute (older opsets) or the constant second input (newer),
        as non-negative ints of its input's rank; ``None`` if unknown or absent."""
        rank = len(self.shapes.get(node.input[0], ()))
        values = _attributes(node).get("axes")
        if values is None and len(node.input) > 1 and node.input[1]:
            constant = self.constant(node.input[1])
            values = None if constant is None else constant.reshape(-1).tolist()
        if values is None or not rank:
            return None
        return tuple(sorted(int(axis) % rank for axis in values))


def _inferred_shapes(model):
    """Tensor name -> dims (int, or ``None`` where symbolic) of every tensor shape inference can type."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a model shape inference cannot follow: the passes that need shapes then leave it alone
        inferred = model
    shapes = {}
    graph = inferred.graph
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.tensor_type.HasField("shape"):
            shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                       for d in value.type.tensor_type.shape.dim)
    return shapes


def _attributes(node):
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _rewrite_each(model, rewrite):
    """Replace each node for which ``rewrite(node)`` returns a list of nodes by that list."""
    nodes = []
    for node in model.nodes:
        replacement = rewrite(node)
        nodes.extend([node] if replacement is None else replacement)
    model.set_nodes(nodes)


def _like(node, op, inputs, outputs, **attributes):
    """A node of type ``op`` named as ``node``."""
    return helper.make_node(op, inputs, outputs, name=node.name, **attributes)


def constants_to_initializers(model):
    """Constant nodes (legacy exports write ReLU6's bounds and Reshape's shape so) become initializers."""
    def rewrite(node):
        attributes = _attributes(node)
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(attributes) != 1:
            return None
        (key, value), = attributes.items()
        if key == "value":
            array = numpy_helper.to_array(value)
        elif key in ("value_float", "value_floats"):
            array = np.asarray(value, np.float32)
        elif key in ("value_int", "value_ints"):
            array = np.asarray(value, np.int64)
        else:
            return None                         # strings, sparse tensors: the op check refuses them
        model.add_constant(node.output[0], array)
        return []
    _rewrite_each(model, rewrite)


def _renames_only(model, node):
    """Identity, or Dropout in inference mode whose mask nobody reads."""
    if node.op_type == "Identity":
        return len(node.input) == 1
    if node.op_type != "Dropout":
        return False
    mode = model.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else np.array(False)
    mask = node.output[1] if len(node.output) > 1 else ""
    return mode is not None and not bool(mode) and not (mask and (model.consumers(mask) or model.is_output(mask)))


def drop_identity(model):
    """Identity, and Dropout in inference mode whose mask nobody reads, only rename a tensor: they disappear."""
    while True:
        node = next((node for node in model.nodes if _renames_only(model, node)), None)
        if node is None:
            return
        source, output = node.input[0], node.output[0]
        model.set_nodes([n for n in model.nodes if n.output[0] != output])
        if model.is_output(output):
            # Keep the graph output's name: the producer of the source writes it instead.
            for producer in model.graph.node:
                for index, name in enumerate(producer.output):
                    if name == source:
                        producer.output[index] = output
            model.rename_uses(source, output)
        else:
            model.rename_uses(output, source)


def reduce_mean_to_global_pool(model):
    """ReduceMean over H and W of an NCHW tensor (the dynamo exporter's global pool, ``x.mean((2, 3))``) becomes
    GlobalAveragePool, followed by Flatten when ``keepdims=0``."""
    def rewrite(node):
        if node.op_type != "ReduceMean" or len(model.shapes.get(node.input[0], ())) != 4 \
                or model.axes(node) != (2, 3):
            return None
        if _attributes(node).get("keepdims", 1):
            return [_like(node, "GlobalAveragePool", [node.input[0]], [node.output[0]])]
        pooled = model.fresh(node.output[0] + "_pooled")
        return [_like(node, "GlobalAveragePool", [node.input[0]], [pooled]),
                helper.make_node("Flatten", [pooled], [node.output[0]], name=model.fresh(node.name + "_flatten"),
                                 axis=1)]
    _rewrite_each(model, rewrite)


def _unpadded(attributes):
    return attributes.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID") and not any(attributes.get("pads", ()))


def whole_map_average_pool_to_global(model):
    """AveragePool whose unpadded kernel covers the whole map (``nn.AvgPool2d(7)`` on 7x7) becomes GlobalAveragePool."""
    def rewrite(node):
        if node.op_type != "AveragePool":
            return None
        attributes = _attributes(node)
        shape = model.shapes.get(node.input[0], ())
        if len(shape) == 4 and None not in shape[2:] and tuple(attributes.get("kernel_shape", ())) == shape[2:] \
                and _unpadded(attributes) and not attributes.get("ceil_mode", 0) \
                and all(d == 1 for d in attributes.get("dilations", (1, 1))):
            return [_like(node, "GlobalAveragePool", [node.input[0]], [node.output[0]])]
        return None
    _rewrite_each(model, rewrite)


def drop_unused_count_include_pad(model):
    """``count_include_pad`` of an AveragePool without padding changes nothing (torch writes 1): it is removed."""
    def rewrite(node):
        if node.op_type != "AveragePool" or not _unpadded(_attributes(node)):
            return None
        attributes = {key: value for key, value in _attributes(node).items() if key != "count_include_pad"}
        return [_like(node, "AveragePool", list(node.input), list(node.output), **attributes)]
    _rewrite_each(model, rewrite)


def squeeze_to_flatten(model):
    """Squeeze of H and W of an ``[N, C, 1, 1]`` tensor, at once or one axis after the other (``x.squeeze(3)
    .squeeze(2)``), becomes Flatten."""
    removed = {}                # Squeeze output -> (the tensor before the first Squeeze, axes removed from it)
    for node in model.nodes:
        if node.op_type != "Squeeze" or model.axes(node) is None:
            continue
        source, axes = node.input[0], model.axes(node)
        if source in removed and len(model.consumers(source)) == 1 and not model.is_output(source):
            source, before = removed[source]
            kept = [axis for axis in range(len(model.shapes[source])) if axis not in before]
            axes = tuple(sorted(before + tuple(kept[axis] for axis in axes)))
        removed[node.output[0]] = source, axes
    def rewrite(node):
        if node.op_type != "Squeeze" or node.output[0] not in removed:
            return None
        source, axes = removed[node.output[0]]
        shape = model.shapes.get(source, ())
        if len(shape) >= 3 and axes == tuple(range(2, len(shape))) and all(shape[axis] == 1 for axis in axes):
            return [_like(node, "Flatten", [source], [node.output[0]], axis=1)]
        return None
    _rewrite_each(model, rewrite)
    _drop_unread(model, ("Squeeze",))


def _drop_unread(model, ops):
    """Remove the nodes of the ``ops`` types whose outputs nothing reads any more."""
    while True:
        unread = [node for node in model.nodes if node.op_type in ops
                  and not any(model.consumers(name) or model.is_output(name) for name in node.output)]
        if not unread:
            return
        model.set_nodes([node for node in model.nodes if node not in unread])


_BATCH = "N"        # the batch dimension in a computed shape: unknown, but copied by Reshape's 0


def _shape_values(model, node, values):
    """The int vector (a list, ``_BATCH`` for the batch dimension) or scalar (an int) ``node`` computes from shapes
    and constants, or ``None`` when it is not such a computation."""
    def value(name):
        if name in values:
            return values[name]
        constant = model.constant(name)
        if constant is None or constant.dtype.kind not in "iu" or constant.ndim > 1:
            return None
        return int(constant) if constant.ndim == 0 else [int(v) for v in constant]

    attributes = _attributes(node)
    inputs = [value(name) if name else None for name in node.input]
    if node.op_type == "Shape":
        dims = [_BATCH if i == 0 and d is None else d for i, d in enumerate(model.shapes.get(node.input[0], ()))]
        dims = dims[attributes.get("start", 0):attributes.get("end", len(dims))]
        return dims if dims and None not in dims else None
    if node.op_type == "Cast" and attributes.get("to") == onnx.TensorProto.INT64:
        return inputs[0]
    if node.op_type == "Gather" and isinstance(inputs[0], list) and inputs[1] is not None \
            and attributes.get("axis", 0) == 0:
        indices, size = inputs[1], len(inputs[0])
        if not all(-size <= i < size for i in ([indices] if isinstance(indices, int) else indices)):
            return None
        return inputs[0][indices] if isinstance(indices, int) else [inputs[0][i] for i in indices]
    if node.op_type == "Unsqueeze" and isinstance(inputs[0], (int, str)):
        axes = attributes.get("axes", inputs[1] if len(inputs) > 1 else None)
        return [inputs[0]] if axes in ([0], [-1]) else None
    if node.op_type == "Concat" and attributes.get("axis") in (0, -1) and all(isinstance(v, list) for v in inputs):
        return [v for vector in inputs for v in vector]
    return None


def computed_shape_to_constant(model):
    """A Reshape shape computed from the input's shape (the legacy export of ``x.view(x.size(0), -1)``: Shape,
    Gather, Unsqueeze, Concat) becomes a constant, the batch dimension written 0 (copy it); the shape arithmetic
    nothing else reads disappears."""
    values = {}
    for node in model.nodes:
        if len(node.output) == 1 and node.op_type in ("Shape", "Cast", "Gather", "Unsqueeze", "Concat"):
            computed = _shape_values(model, node, values)
            if computed is not None:
                values[node.output[0]] = computed

    def rewrite(node):
        target = values.get(node.input[1]) if node.op_type == "Reshape" and len(node.input) == 2 else None
        if not isinstance(target, list) or _BATCH in target[1:] or \
                (_attributes(node).get("allowzero", 0) and _BATCH in target):
            return None
        shape = model.fresh(node.input[1] + "_constant")
        model.add_constant(shape, np.array([0 if v == _BATCH else v for v in target], np.int64))
        return [_like(node, "Reshape", [node.input[0], shape], list(node.output), **_attributes(node))]
    _rewrite_each(model, rewrite)
    _drop_unread(model, ("Shape", "Cast", "Gather", "Unsqueeze", "Concat"))


def reshape_to_flatten(model):
    """Reshape to ``[N, C*H*W]`` with a constant shape (N written 0, -1 or 1; the size or -1) becomes Flatten."""
    def rewrite(node):
        if node.op_type != "Reshape" or len(node.input) != 2:
            return None
        target, shape = model.constant(node.input[1]), model.shapes.get(node.input[0], ())
        if target is None or len(shape) < 2 or None in shape[1:]:
            return None
        target = [int(v) for v in target.reshape(-1)]
        size = int(np.prod(shape[1:]))
        batch = (-1, 1) if _attributes(node).get("allowzero", 0) else (-1, 1, 0)   # 0 copies N unless allowzero
        if len(target) == 2 and target[0] in batch and target[1] in (-1, size) and target != [-1, -1]:
            return [_like(node, "Flatten", [node.input[0]], [node.output[0]], axis=1)]
        return None
    _rewrite_each(model, rewrite)


def _bias_add(model, matmul, outputs):
    """The Add reading only ``matmul``'s output and a constant vector of ``outputs`` values, or ``None``."""
    readers = model.consumers(matmul.output[0])
    if len(readers) != 1 or readers[0].op_type != "Add" or model.is_output(matmul.output[0]):
        return None
    add = readers[0]
    bias = model.constant(add.input[1] if add.input[0] == matmul.output[0] else add.input[0])
    if bias is None or bias.size != outputs or bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
        return None
    return add


def matmul_add_to_gemm(model):
    """MatMul of a flat tensor by a constant 2-D matrix becomes Gemm; a constant per-output Add after it, its bias."""
    fused = {}                  # output of a bias Add -> None (the Add disappears into the Gemm)

    def rewrite(node):
        if node.output[0] in fused:
            return []
        weights = model.constant(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if weights is None or weights.ndim != 2 or len(model.shapes.get(node.input[0], ())) != 2:
            return None
        add = _bias_add(model, node, weights.shape[1])
        if add is None:
            return [_like(node, "Gemm", list(node.input), [node.output[0]])]
        other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
        bias = model.fresh(other + "_vector")
        model.add_constant(bias, model.constant(other).reshape(-1))
        fused[add.output[0]] = None
        return [_like(node, "Gemm", [*node.input, bias], [add.output[0]])]
    _rewrite_each(model, rewrite)


def hard_sigmoid_mul_to_hard_swish(model):
    """``x * HardSigmoid(x)`` with alpha 1/6 and beta 1/2 (the legacy exporter's HardSwish before opset 14) becomes
    one HardSwish, when nothing else reads the HardSigmoid."""
    gates = {node.output[0]: node for node in model.nodes if node.op_type == "HardSigmoid"
             and np.isclose(_attributes(node).get("alpha", 0.2), 1 / 6, rtol=1e-6)
             and np.isclose(_attributes(node).get("beta", 0.5), 0.5, rtol=1e-6)
             and len(model.consumers(node.output[0])) == 1 and not model.is_output(node.output[0])}
    fused = set()
    for node in model.nodes:
        if node.op_type == "Mul" and len(node.input) == 2:
            for gate, other in (node.input, node.input[::-1]):
                if gate in gates and gates[gate].input[0] == other:
                    fused.add(gate)

    def rewrite(node):
        if node.op_type == "HardSigmoid" and node.output[0] in fused:
            return []
        if node.op_type == "Mul" and len(node.input) == 2 and fused & set(node.input):
            gate = next(name for name in node.input if name in fused)
            return [_like(node, "HardSwish", [gates[gate].input[0]], [node.output[0]])]
        return None
    _rewrite_each(model, rewrite)


#: The passes in the order :func:`normalize` runs them (each sees the result of the ones before).
PASSES = (constants_to_initializers, drop_identity, reduce_mean_to_global_pool, whole_map_average_pool_to_global,
          drop_unused_count_include_pad, squeeze_to_flatten, computed_shape_to_constant, reshape_to_flatten,
          matmul_add_to_gemm, hard_sigmoid_mul_to_hard_swish)


def normalize(model):
    """A copy of ``model`` (a ``ModelProto`` with its weights loaded) with every pass of :data:`PASSES` applied."""
    rewritten = _Model(model)
    for rewrite in PASSES:
        rewritten.shapes = _inferred_shapes(rewritten.model)
        rewrite(rewritten)
    return rewritten.model
