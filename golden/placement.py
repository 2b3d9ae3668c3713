"""Network placement: where a network's engine layers, weights, biases and tensors go in the engine's memories.

Weights and biases are placed one layer after another (a two-bit layer's code words four to a weight word, from a word
boundary); activation tensors get regions of the activation memory by
first fit when they are written, each freed after the last layer of any kind (engine or host) that reads it, the
network output never (docs/memory.md section 5); a residual add's two inputs both live until the add. An elementwise
activation (a 256-entry table) is fused into the engine layer that produces its input when nothing else reads that
input: the layer looks its outputs up in the table (descriptor ``table``, ``table_base``) and writes the activation's
output; the tensor between them is never stored. A channel concatenation is done by placement where the layout
allows it: its producers write their outputs straight into channel-group slices of the concatenated tensor (descriptor
``out_base`` at the slice's first word, ``out_skew`` turning the banks, docs/memory.md section 1), and the
concatenation costs nothing; an input whose channel count is not a multiple of the lanes leaves a gap up to the next
word, which the layers after it carry (channel-wise layers) or give zero weights (conv, fully connected).
``golden.images`` writes the images of a placed network.
"""

import dataclasses

import numpy as np

from .add import add_descriptor_fields
from .conv import conv_output_size
from .descriptor import MAX_PAD, LayerDescriptor, check_descriptor, layer_descriptor
from .layouts import CODE_BITS, CODE_WORDS_PER_WORD, activation_words, groups, row_pitch, weight_words
from .network import INPUT
from .pool import MAX_POOL_PARAMS, average_pool_params

__all__ = ["plan_network"]


def plan_network(network, config):
    """Place every engine layer of a quantized network in the engine's memories and give it its descriptor.

    Conv, depthwise, fully connected (after a flatten too), global average pool, residual add and max pool (strides
    1 and 2, padding up to ``golden.descriptor.MAX_PAD``) layers run on the engine; their weights and biases are
    placed one layer after another, their tensors by first fit over the activation memory when they are written
    (host layers' outputs too: the host writes them there), each freed after the last layer of any kind that reads
    it, so that an add finds both its inputs; the network output is never freed. An ``activation`` layer whose input
    an engine layer wrote and nothing else reads (nor is it the network output) is fused into that layer: its table
    gets the next table of the table memory (``table_base``) and the layer writes the activation's output; an
    activation after a fused one (``conv -> HardSwish -> LeakyReLU``) fuses too, its table composed with the one
    before (``T2[T1[q + 128] + 128]``, exact since both map int8 to int8), so a chain costs one table; an activation
    after a placed concatenation fuses into each of its producers alike (each slice then holds the activation's
    output; the concatenated tensor is the activation's); any other activation stays a host layer. A ``concat`` is
    placed, not run, when every input is written by an engine layer, read by nothing else and not the network
    output: input ``i`` starts at channel group ``g0 = sum(ceil(C_j / lanes), j < i)``, a whole activation word, and
    its producer writes its output as channel groups ``g0 ..`` of the concatenated tensor (``out_base = base + g0 *
    ceil(W / lanes)``, the tensor's row pitch, ``out_skew = g0 mod lanes``); the tensor's region is allocated when
    the first producer writes, with ``max(g0) * ceil(W / lanes)`` words to spare so that every slice's descriptor
    region lies inside it. An input before the last whose channel count is not a multiple of ``lanes`` leaves
    **gaps** (docs/memory.md section 1): the tensor is stored with ``g0_last * lanes + C_last`` channels, channel
    ``c`` of input ``i`` at ``g0 * lanes + c``. Engine layers reading a tensor with gaps are stored for them: conv
    and fully connected weights spread to the stored input channels with zeros on the gaps (exact), their outputs
    without gaps; depthwise weights, bias and ``k_c`` spread alike, and depthwise, max pool, global average pool,
    fused activations and an add of two inputs with the same gaps write outputs with the same gaps; an add with gaps
    in one input only stays a host layer, and a layer with two-bit weights reading gaps is stored as int8 words (no
    code means 0). Any other concatenation (an input from the host, read twice) stays a host layer. Descriptors are
    checked against a configuration whose depths are at least what the network needs, so that a network too large
    for ``config`` is still placed (its ``words`` say what it needs). On an engine with the two-bit decoder
    (``config.weight_code_bits == 2``) a layer with a ``codebook`` is stored as two-bit codes (descriptor
    ``weight_format`` 1 and its codebook): its code words start at a weight word boundary, four to a word, and its
    ``weight_base`` counts code words (docs/memory.md section 2a); every other layer, and every layer of an engine
    without the decoder, is stored as int8 words.

    Args:
        network: a :class:`golden.network.Network`.
        config: the :class:`golden.config.NPUConfig` whose layouts place it.
    Returns:
        dict: ``layers`` (per engine layer in order, a dict with ``layer``, ``input`` (the tensor read, past any
        flatten), ``flattened``, ``codebook`` (the layer's, ``None`` for none), ``output`` (the tensor written: the
        layer's, or its last fused activation's; a slice's when it writes one), ``activations`` (the fused activation
        layers in order, empty for none), ``table`` (their composed int8 table), ``weights``, ``bias`` and
        ``channel_shift`` as stored (weighted layers: OHWI after a flatten, spread over gaps) and ``descriptor``),
        ``tensors`` (by name: ``base``, ``row_pitch``, ``shape`` (as stored), ``words``; a fused layer's
        intermediate tensor has none; a slice of a placed concatenation has its ``concat`` and ``skew`` too, a tensor
        with gaps its ``channels``: the stored channel of each channel),
        ``host_layers`` (``name`` and ``kind`` of the layers the engine does not run), ``words`` (words needed:
        ``activation``, ``weights``, ``bias``, ``tables``) and ``config``
        (``config`` with its depths raised to ``words``: the one the descriptors are checked against).
    Raises:
        ValueError: a layer with per-channel multipliers, which the engine does not store.
    """
    shapes = {name: tensor.shape for name, tensor in network.tensors.items()}
    aliases = {}
    entries, host_layers = [], []
    readers = {}                  # tensor -> layers reading it
    for layer in network.layers:
        for name in layer.inputs:
            readers[name] = readers.get(name, 0) + 1
    producers = {}                # tensor -> the engine entry that writes it
    tables = []
    slices = {}                   # concatenation input -> (concatenated tensor, its first channel group)
    joined = {}                   # placed concatenation (or the activation fused after it) -> its producers' entries
    stored = dict(shapes)         # tensor -> its shape in the activation memory (gaps included)
    gaps = {}                     # tensor with gaps -> the stored channel of each of its channels
    placed = set()                # concatenations done by placement
    decoder = config.weight_code_bits == CODE_BITS
    weight_word = bias_base = 0   # the next free weight word and bias word
    for layer in network.layers:
        kind = layer.kind
        if kind == "flatten":
            aliases[layer.output] = aliases.get(layer.input, layer.input)
            continue
        if kind == "activation":
            producer = producers.get(layer.input)
            if (producer is not None or layer.input in joined) and readers[layer.input] == 1 \
                    and layer.input != network.output:
                for entry in [producer] if producer is not None else joined[layer.input]:
                    _fuse(entry, layer, tables)
                if producer is not None:
                    producer["output"] = layer.output
                    producers[layer.output] = producer
                else:                 # after a placed concatenation: its producers write the activation's slices
                    joined[layer.output] = joined.pop(layer.input)
                    slices.update({name: (layer.output, start) for name, (concat, start) in slices.items()
                                   if concat == layer.input})
                stored[layer.output] = stored[layer.input]
                if layer.input in gaps:
                    gaps[layer.output] = gaps[layer.input]
            else:
                host_layers.append({"name": layer.name, "kind": kind})
            continue
        if kind == "concat":
            if len(set(layer.inputs)) == len(layer.inputs) and all(
                    name in producers and readers[name] == 1 and name != network.output for name in layer.inputs):
                counts = [stored[name][-1] for name in layer.inputs]
                starts = np.cumsum([0] + [-(-count // config.lanes) for count in counts[:-1]])
                slices.update({name: (layer.output, int(start)) for name, start in zip(layer.inputs, starts)})
                joined[layer.output] = [producers[name] for name in layer.inputs]
                placed.add(layer.name)
                index = np.concatenate([start * config.lanes + gaps.get(name, np.arange(count))
                                        for name, start, count in zip(layer.inputs, starts, counts)])
                stored[layer.output] = (*shapes[layer.output][:2], int(starts[-1]) * config.lanes + counts[-1])
                if len(index) != stored[layer.output][2]:
                    gaps[layer.output] = index
            else:
                host_layers.append({"name": layer.name, "kind": kind})
            continue
        source = aliases.get(layer.inputs[0], layer.inputs[0])
        index = gaps.get(source)
        in_shape = stored[source]
        in_shape = (1, 1, in_shape[0]) if len(in_shape) == 1 else tuple(in_shape)
        entry = dict(layer=layer, input=source, flattened=source != layer.inputs[0], input2=None,
                     codebook=None if getattr(layer, "codebook", None) is None else np.asarray(layer.codebook),
                     output=layer.output, activations=(), table=None)
        second = aliases.get(layer.inputs[-1], layer.inputs[-1])
        if kind == "add" and tuple(shapes[second]) == tuple(shapes[source]) == tuple(shapes[layer.output]) \
                and np.array_equal(gaps.get(second, ()), gaps.get(source, ())):
            # elementwise, both inputs in one layout (a broadcasting add, or one with gaps in one input only, stays
            # a host layer)
            entry.update(kind="add", kernel=(1, 1), stride=(1, 1), padding=(0, 0, 0, 0), out_channels=in_shape[2],
                         input2=second)
        elif kind == "conv" and layer.groups == 1:
            entry.update(kind="conv", kernel=layer.weights.shape[1:3], stride=layer.stride, padding=layer.padding,
                         out_channels=layer.weights.shape[0])
        elif kind == "depthwise":
            entry.update(kind="depthwise", kernel=layer.weights.shape[:2], stride=layer.stride, padding=layer.padding,
                         out_channels=in_shape[2])
        elif kind == "fully_connected":
            entry.update(kind="fully_connected", kernel=in_shape[:2], stride=(1, 1), padding=(0, 0, 0, 0),
                         out_channels=layer.weights.shape[0])
        elif kind == "average_pool" and (layer.kernel is None or tuple(layer.kernel) == in_shape[:2]) \
                and tuple(layer.padding) == (0, 0, 0, 0):
            entry.update(kind="average_pool", kernel=in_shape[:2], stride=(1, 1), padding=(0, 0, 0, 0),
                         out_channels=in_shape[2])
        elif kind == "max_pool" and set(layer.stride) <= {1, 2} and max(layer.padding) <= MAX_PAD:
            entry.update(kind="max_pool", kernel=tuple(layer.kernel), stride=tuple(layer.stride),
                         padding=tuple(layer.padding), out_channels=in_shape[2])
        else:
            host_layers.append({"name": layer.name, "kind": kind})
            continue
        read = _read_extent(in_shape, entry, config)
        if read is None:
            host_layers.append({"name": layer.name, "kind": kind})
            continue
        entry["in_shape"], entry["padding"] = read
        if entry["kind"] == "add":
            entry["params"] = dict(add_descriptor_fields(layer.params), qmin=int(layer.qmin), qmax=int(layer.qmax))
        elif entry["kind"] == "max_pool":
            entry["params"] = dict(MAX_POOL_PARAMS, qmin=-128, qmax=127)
        elif entry["kind"] == "average_pool":
            count = in_shape[0] * in_shape[1]
            multiplier, shift = average_pool_params(count)
            entry["params"] = dict(input_zero_point=0, output_zero_point=0, multiplier=multiplier, shift=shift,
                                   qmin=-128, qmax=127)
        else:
            if np.ndim(layer.multiplier):
                raise ValueError(f"layer {layer.name!r} has per-channel multipliers, which the engine does not store")
            entry["params"] = dict(input_zero_point=network.tensors[source].zero_point,
                                   output_zero_point=network.tensors[layer.output].zero_point,
                                   multiplier=int(layer.multiplier), shift=int(layer.shift),
                                   qmin=int(layer.qmin), qmax=int(layer.qmax))
            probe = LayerDescriptor(kind=entry["kind"], in_height=in_shape[0], in_width=in_shape[1],
                                    in_channels=in_shape[2], out_height=1, out_width=1,
                                    out_channels=entry["out_channels"], kernel_height=entry["kernel"][0],
                                    kernel_width=entry["kernel"][1])
            words = weight_words(probe, config)
            entry.update(_stored_parameters(layer, shapes[source], index, in_shape[2], entry["flattened"]))
            if decoder and entry["codebook"] is not None and index is None:
                codebook = {f"codebook{i}": int(v) for i, v in enumerate(entry["codebook"])}
                entry["params"].update(weight_format=1, **codebook)
                entry["weight_base"] = weight_word * CODE_WORDS_PER_WORD
                weight_word += -(-words // CODE_WORDS_PER_WORD)
            else:
                entry["weight_base"] = weight_word
                weight_word += words
            entry["bias_base"] = bias_base
            bias_base += groups(entry["out_channels"], config)
        entries.append(entry)
        producers[layer.output] = entry
        if index is not None and entry["kind"] not in ("conv", "fully_connected"):    # a channel-wise layer
            gaps[layer.output] = index
            stored[layer.output] = (*shapes[layer.output][:2], in_shape[2])

    # Activation regions: first fit over [0, inf) when written, a tensor freed after the last layer (engine or host)
    # that reads it; the network output lives to the end.
    # A fused layer writes its activation's output (and the activation is no step of its own).
    tensors, live = {}, {}
    fused = {entry["layer"].output: entry["output"] for entry in entries if entry["activations"]}
    fused_names = {activation.name for entry in entries for activation in entry["activations"]}
    steps = [layer for layer in network.layers
             if layer.kind != "flatten" and layer.name not in fused_names and layer.name not in placed]
    last_read = {aliases.get(name, name): index for index, layer in enumerate(steps) for name in layer.inputs}
    last_read[aliases.get(network.output, network.output)] = len(steps)

    spare = {}                    # concatenated tensor -> words past its end that its last slice's region reaches
    for concat, start in slices.values():
        spare[concat] = max(spare.get(concat, 0), start * -(-shapes[concat][1] // config.lanes))

    def allocate(name, shape):
        shape = (1, 1, shape[0]) if len(shape) == 1 else tuple(shape)
        words = activation_words(shape, config) + spare.get(name, 0)
        base = 0
        for start, end in sorted(live.values()):
            if base + words <= start:
                break
            base = max(base, end)
        live[name] = (base, base + words)
        tensors[name] = {"base": base, "row_pitch": row_pitch(shape[1], shape[2], config), "shape": list(shape),
                         "words": words}
        if name in gaps:
            tensors[name]["channels"] = gaps[name].tolist()

    allocate(INPUT, stored[INPUT])
    for index, layer in enumerate(steps):
        output = fused.get(layer.output, layer.output)
        if output in slices:          # written into its concatenation, allocated by the first of its producers
            concat, start = slices[output]
            if concat not in tensors:
                allocate(concat, stored[concat])
            whole = tensors[concat]
            tensors[output] = dict(base=whole["base"] + start * -(-shapes[output][1] // config.lanes),
                                   row_pitch=whole["row_pitch"], shape=list(stored[output]),
                                   words=shapes[output][0] * whole["row_pitch"], concat=concat,
                                   skew=start % config.lanes)
            if output in gaps:
                tensors[output]["channels"] = gaps[output].tolist()
            output = concat
        else:
            allocate(output, stored[output])
        for name in [name for name in live if last_read.get(name, -1) <= index and name != output]:
            del live[name]
    words = {"activation": max((t["base"] + t["words"] for t in tensors.values()), default=0),
             "weights": weight_word, "bias": bias_base, "tables": len(tables)}
    big = dataclasses.replace(config, act_depth=max(config.act_depth, words["activation"]),
                              weight_depth=max(config.weight_depth, words["weights"]),
                              bias_depth=max(config.bias_depth, words["bias"]),
                              table_depth=max(config.table_depth, words["tables"]))
    for entry in entries:
        source, output = tensors[entry["input"]], tensors[entry["output"]]
        if entry["input2"] is not None:
            second = tensors[entry["input2"]]
            entry["params"].update(in2_base=second["base"], in2_row_pitch=second["row_pitch"])
        descriptor = layer_descriptor(
            entry["kind"], entry["in_shape"], entry["out_channels"], config=big, kernel=tuple(entry["kernel"]),
            stride=tuple(entry["stride"]), padding=tuple(entry["padding"]), in_base=source["base"],
            out_base=output["base"], weight_base=entry.get("weight_base", 0), bias_base=entry.get("bias_base", 0),
            **entry["params"])
        if descriptor.in_row_pitch != source["row_pitch"]:      # a cropped input (_read_extent): its tensor's pitch
            descriptor = dataclasses.replace(descriptor, in_row_pitch=source["row_pitch"])
            check_descriptor(descriptor, big)
        if "concat" in output:        # a slice: the concatenated tensor's row pitch, banks turned
            descriptor = dataclasses.replace(descriptor, out_row_pitch=output["row_pitch"], out_skew=output["skew"])
            check_descriptor(descriptor, big)
        entry["descriptor"] = descriptor
    return {"layers": entries, "tensors": tensors, "host_layers": host_layers, "words": words, "config": big}


def _fuse(entry, activation, tables):
    """Fuse an ``activation`` layer into an engine layer's ``entry``: its table becomes the layer's (the next of
    ``tables``), or composes with the one the layer has (``T2[T1[q + 128] + 128]``, in place)."""
    table = np.asarray(activation.table)
    if entry["activations"]:          # a chain: one table, the composition (exact: int8 in, int8 out)
        table = table[entry["table"].astype(np.int64) + 128]
        tables[entry["params"]["table_base"]] = table
    else:
        entry["params"].update(table=1, table_base=len(tables))
        tables.append(table)
    entry.update(activations=entry["activations"] + (activation,), table=table)


def _stored_parameters(layer, shape, index, stored, flattened):
    """A weighted layer's ``weights``, ``bias`` and ``channel_shift`` as the engine stores them.

    A fully connected layer after a flatten gets OHWI weights of its input ``shape`` ``(H, W, C)``. On an input with
    gaps (``index``: the stored channel of each input channel, ``stored`` channels in all) the input-channel axis is
    spread to the stored channels, zeros on the gaps (exact: a zero weight times anything is 0, zero point included);
    a depthwise layer's bias and ``k_c`` are spread alike (its outputs on the gaps are gaps too).
    """
    weights, bias, shifts = np.asarray(layer.weights), np.asarray(layer.bias), np.asarray(layer.channel_shift)
    if flattened:
        weights = weights.reshape(weights.shape[0], *shape)
    if index is not None:
        weights, bias, shifts = (_spread(weights, index, stored),) + (
            tuple(_spread(values, index, stored) for values in (bias, shifts)) if layer.kind == "depthwise"
            else (bias, shifts))
    return {"weights": weights, "bias": bias, "channel_shift": shifts}


def _spread(values, index, count):
    """``values`` with their last axis spread to ``count`` entries: entry ``index[i]`` holds ``values[..., i]``, the
    others 0."""
    spread = np.zeros(values.shape[:-1] + (count,), dtype=values.dtype)
    spread[..., index] = values
    return spread


def _read_extent(shape, entry, config):
    """The part of an input ``(H, W, C)`` that a layer's windows read, and the padding that goes with it.

    Where the stride does not divide the padded input (ResNet's 1x1 stride-2 shortcut on an even map, a 2x2 max pool
    on an odd one) the last rows or columns are never read; a descriptor cannot say so (the padding after the input
    that it implies is never negative), so the engine is given the input without them, at the tensor's row pitch
    (the same words: rows are ``row_pitch`` apart). Returns ``((H', W', C), padding)``, or ``None`` where dropping
    columns would change the words of a row's channel group (``ceil(W / lanes)``).
    """
    top, bottom, left, right = entry["padding"]
    read, padding = [], []
    for size, kernel, stride, before, after in ((shape[0], entry["kernel"][0], entry["stride"][0], top, bottom),
                                                (shape[1], entry["kernel"][1], entry["stride"][1], left, right)):
        reach = (conv_output_size(size, kernel, stride, before, after) - 1) * stride + kernel - before
        read.append(min(size, reach))
        padding += [before, max(0, reach - size)]
    if -(-read[1] // config.lanes) != -(-shape[1] // config.lanes):
        return None
    return (read[0], read[1], shape[2]), tuple(padding)
