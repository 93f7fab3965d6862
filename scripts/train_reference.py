#!/usr/bin/python3
"""PyTorch side of tests/test_trainer.c: whole-MobileFaceNet gradients and an SGD run.

The test writes, into DIR:
  x.f32       input images [B, H, W, 3], NHWC, already normalised
  params.f32  every parameter in faceri's layer order and layout: for each layer its
              weights (dense OHWI, depthwise HWC), bias [out_c], slope [out_c] (PReLU
              layers only); then the linear head [C, D]
  y.i32       labels [B]
and this script rebuilds the network from the TFLite file (mfn_torch.py), checks that
the rebuild's layers line up with the params file (shapes, and values within 1e-6 of
the TFLite ones), loads the params file into it (so both sides start from the very same
numbers) and writes, in float64:
  grads.f64   the gradient of the loss at the initial params, same order as params.f32
  losses.f64  loss0 (the first forward's) then the loss before each of STEPS SGD steps
Loss: mean cross-entropy of logits = s * e W^T, e = the embedding, L2-normalised when
NORMALISE is 1 (the device's softmax-mode head).

usage: train_reference.py DIR B C STEPS LR MOMENTUM WEIGHT_DECAY S NORMALISE
$FACERI_TRAIN_REF_DTYPE=float32 runs torch in float32 instead (to see how far float32
rounding alone moves a run: the device computes in float32).
"""

import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mfn_torch  # noqa: E402


def layers_of(model):
    """[(conv, prelu or None)] in execution order: faceri's fused layers."""
    out = []
    for kind, key, _ins, _out, _extra in model.steps:
        if kind != "module":
            continue
        mod = model.layers[key]
        if isinstance(mod, mfn_torch.TFConv):
            out.append([mod.conv, None])
        elif isinstance(mod, nn.PReLU):
            if not out or out[-1][1] is not None:
                raise SystemExit(f"{key}: a PReLU that does not follow a conv")
            out[-1][1] = mod
    return out


def faceri_order(conv, prelu):
    """The layer's parameters as (torch tensor, to-faceri-layout function) pairs."""
    depthwise = conv.groups > 1
    if depthwise:
        to_w = lambda t: t[:, 0].permute(1, 2, 0)  # noqa: E731  [C,1,kh,kw] -> HWC
    else:
        to_w = lambda t: t.permute(0, 2, 3, 1)  # noqa: E731  OIHW -> OHWI
    items = [(conv.weight, to_w), (conv.bias, lambda t: t)]
    if prelu is not None:
        items.append((prelu.weight, lambda t: t))
    return items


def main(argv):
    if len(argv) != 10:
        raise SystemExit(__doc__)
    d = argv[1]
    b, c, steps = int(argv[2]), int(argv[3]), int(argv[4])
    lr, momentum, wd, s = float(argv[5]), float(argv[6]), float(argv[7]), float(argv[8])
    normalise = int(argv[9]) != 0
    torch.set_num_threads(2)
    torch.manual_seed(0)

    dtype = torch.float32 if os.environ.get("FACERI_TRAIN_REF_DTYPE") == "float32" else torch.float64
    model = mfn_torch.build_model(dtype=dtype)
    layers = layers_of(model)
    for conv, _ in layers:
        if conv.bias is None:  # faceri always has a bias (zeros)
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=dtype))
    h, w = model.input_shape[1], model.input_shape[2]
    x = torch.from_numpy(np.fromfile(os.path.join(d, "x.f32"), dtype=np.float32).astype(np.float64)).to(dtype)
    x = x.reshape(b, h, w, 3)
    y = torch.from_numpy(np.fromfile(os.path.join(d, "y.i32"), dtype=np.int32).astype(np.int64))
    flat = np.fromfile(os.path.join(d, "params.f32"), dtype=np.float32).astype(np.float64)

    params = []  # (torch param, to-faceri function)
    for conv, prelu in layers:
        params.extend(faceri_order(conv, prelu))
    at = 0
    with torch.no_grad():
        for p, to_f in params:
            view = to_f(p)
            n = view.numel()
            if at + n > flat.size:
                raise SystemExit("params.f32 is shorter than the rebuilt network")
            given = torch.from_numpy(flat[at:at + n]).to(dtype).reshape(view.shape)
            diff = (view - given).abs().max().item()
            if diff > 1e-6:
                raise SystemExit(f"parameter at float {at}: the params file differs from the TFLite "
                                 f"weights by {diff} (layers out of line?)")
            view.copy_(given)
            at += n
        dim = model(x[:1]).shape[1]
    if flat.size != at + c * dim:
        raise SystemExit(f"params.f32 has {flat.size} floats, expected {at + c * dim}")
    head = nn.Parameter(torch.from_numpy(flat[at:].reshape(c, dim).copy()).to(dtype))
    params.append((head, lambda t: t))
    model.train()

    def loss_fn():
        e = model(x)
        if normalise:
            e = F.normalize(e, dim=1, eps=1e-5)
        return F.cross_entropy(s * e @ head.t(), y)

    loss = loss_fn()
    loss.backward()
    grads = np.concatenate([to_f(p.grad).detach().reshape(-1).double().numpy() for p, to_f in params])
    grads.astype(np.float64).tofile(os.path.join(d, "grads.f64"))

    opt = torch.optim.SGD([p for p, _ in params], lr=lr, momentum=momentum, weight_decay=wd)
    losses = [loss.item()]
    for _ in range(steps):
        opt.zero_grad()
        l = loss_fn()
        l.backward()
        losses.append(l.item())
        opt.step()
    np.asarray(losses, dtype=np.float64).tofile(os.path.join(d, "losses.f64"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
