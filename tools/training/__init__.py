"""Training of the built-in models (tools/train_reference.py, tools/train_digits.py): the loop and the ONNX export.

torch is needed here only (the optional ``train`` extra): nothing that the quantizer, the golden model or the test
suite imports without torch imports this package.
"""

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from tqdm import tqdm

from cli import atomic_path

__all__ = ["train", "export", "onnx_logits"]


def train(model, images, labels, *, epochs, batch_size, learning_rate, seed, flip=True):
    """Train ``model`` in place with AdamW and a one-cycle schedule; random horizontal flips as augmentation.

    Parameters
    ----------
    model : torch.nn.Module
    images : numpy.ndarray
        float32 ``[N, 1, 28, 28]``, already normalised.
    labels : numpy.ndarray
        int64 ``[N]``.
    epochs, batch_size : int
    learning_rate : float
        Peak learning rate of the one-cycle schedule.
    seed : int
        Seeds the shuffling and the flips (the weights are seeded by the caller before building the model).
    flip : bool
        Flip half of each batch horizontally (clothes; not for digits, whose mirror image is another shape).
    """
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    steps = epochs * (len(x) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps)
    loss_function = nn.CrossEntropyLoss()
    model.train()
    with tqdm(total=steps, desc="training", unit="batch") as bar:
        for epoch in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x) - batch_size + 1, batch_size):
                index = order[start:start + batch_size]
                batch = x[index]
                if flip:
                    flipped = torch.rand(batch_size, generator=generator) < 0.5
                    batch = torch.where(flipped[:, None, None, None], batch.flip(3), batch)
                loss = loss_function(model(batch), y[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update()
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    model.eval()


def export(model, path, *, fold_batch_norm, metadata, producer="wess-npu tools/train_reference.py"):
    """Export ``model`` (in eval mode) to ONNX opset 17 with the legacy exporter, a dynamic batch axis.

    Parameters
    ----------
    model : torch.nn.Module
    path : str
        Output file, written atomically (:func:`cli.atomic_path`).
    fold_batch_norm : bool
        True: the exporter's eval-mode export, which folds BatchNormalization into the preceding Conv.
        False: ``TrainingMode.PRESERVE`` (the model is in eval mode, so BN uses its running statistics) without
        constant folding, which keeps every BatchNormalization node.
    metadata : dict of str to str
        Stored as the model's ``metadata_props``.
    producer : str
        Stored as the model's ``producer_name`` (the script that trained it).
    """
    model.eval()
    with atomic_path(path) as temporary:
        with warnings.catch_warnings():
            # The legacy TorchScript exporter is chosen on purpose: it can keep BatchNormalization unfolded.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), temporary, dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              training=(torch.onnx.TrainingMode.EVAL if fold_batch_norm
                                        else torch.onnx.TrainingMode.PRESERVE),
                              do_constant_folding=fold_batch_norm)
        proto = onnx.load(temporary)
        onnx.helper.set_model_props(proto, metadata)
        proto.producer_name = producer
        onnx.checker.check_model(proto)
        onnx.save(proto, temporary)


def onnx_logits(path, images, *, batch_size=1000):
    """Float logits of an ONNX model in onnxruntime (one thread), ``images`` float32 ``[N, 1, 28, 28]``."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["logits"], {"input": images[start:start + batch_size]})[0]
                           for start in range(0, len(images), batch_size)])
