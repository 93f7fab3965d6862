#!/usr/bin/python3
"""PyTorch side of tests/test_trainer_ri.c: the gradient of the paper's whole loss
L = ArcFace + alpha L1 + beta ID + gamma MSE through the RI heads and MobileFaceNet, in
float64 with autograd.

The test writes, into DIR:
  x.f32        input images [B, H, W, 3] (NHWC, normalised)
  params.f32   the trainer's tensors (train_reference.py's order: every layer's weights,
               bias, slope; then the ArcFace prototypes [C, D])
  heads.f32    the RI heads' tensors in fr_ri_heads order (trainable ones, then the BN
               running statistics), faceri layouts (ri_heads_reference.py)
  y.i32        labels [B]; flags.i32 [B] (bit 0: a UI row: no ArcFace term, no xi)
  centre.f32   the UI centre [D]
  meta.txt     "key value" lines: batch classes s m feature hidden kernel bn_eps tau
               l1_beta alpha beta gamma
and this script writes grads.f64 (params.f32's order, then the heads' trainable tensors)
and loss.f64 (total, arcface, l1, id, mse). Dropout is off (the test sets rate 0: the
masks are tested in test_ri_heads); xi (Eq. 3) is computed here, detached, from the
prototypes and the centre before any update; v' projects the raw embedding, detached.
ArcFace divides by the whole batch, UI rows included (faceri's train_loss.h).
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as Fn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mfn_torch  # noqa: E402
from ri_heads_reference import RIHeads  # noqa: E402
from train_reference import faceri_order, layers_of  # noqa: E402


def arcface_rows(x, w, y, s, m):
    """Per-row ArcFace cross-entropy (arcface_torch numerics) for labelled rows."""
    import math
    cos = x @ Fn.normalize(w, dim=1).t()
    idx = torch.arange(x.shape[0])
    target = cos[idx, y]
    sin_theta = torch.sqrt((1.0 - target * target).clamp_min(0))
    cos_theta_m = target * math.cos(m) - sin_theta * math.sin(m)
    final = torch.where(target > math.cos(math.pi - m), cos_theta_m, target - math.sin(math.pi - m) * m)
    logits = cos.clone()
    logits[idx, y] = final
    return Fn.cross_entropy(logits * s, y, reduction="sum")


def main():
    d = sys.argv[1]
    m = {}
    with open(os.path.join(d, "meta.txt")) as fh:
        for line in fh:
            k, val = line.split()
            m[k] = float(val)
    B, C = int(m["batch"]), int(m["classes"])
    torch.set_num_threads(2)
    dt = torch.float64
    model = mfn_torch.build_model(dtype=dt)
    layers = layers_of(model)
    for conv, _ in layers:
        if conv.bias is None:
            conv.bias = torch.nn.Parameter(torch.zeros(conv.out_channels, dtype=dt))
    hh, ww = model.input_shape[1], model.input_shape[2]
    x = torch.from_numpy(np.fromfile(os.path.join(d, "x.f32"), dtype="<f4").astype(np.float64)).reshape(B, hh, ww, 3)
    y = torch.from_numpy(np.fromfile(os.path.join(d, "y.i32"), dtype="<i4").astype(np.int64))
    flags = torch.from_numpy(np.fromfile(os.path.join(d, "flags.i32"), dtype="<i4").astype(np.int64))
    centre = torch.from_numpy(np.fromfile(os.path.join(d, "centre.f32"), dtype="<f4").astype(np.float64))
    flat = np.fromfile(os.path.join(d, "params.f32"), dtype="<f4").astype(np.float64)
    params = []
    for conv, prelu in layers:
        params.extend(faceri_order(conv, prelu))
    at = 0
    with torch.no_grad():
        for p, to_f in params:
            view = to_f(p)
            n = view.numel()
            view.copy_(torch.from_numpy(flat[at:at + n]).reshape(view.shape))
            at += n
    D = centre.numel()
    head = torch.nn.Parameter(torch.from_numpy(flat[at:].reshape(C, D).copy()))
    if flat.size != at + C * D:
        raise SystemExit(f"params.f32 has {flat.size} floats, expected {at + C * D}")
    params.append((head, lambda t: t))

    # The feature map: the output of fused layer `feature` (its PReLU if it has one).
    fl = layers[int(m["feature"])]
    grab = {}
    (fl[1] or fl[0]).register_forward_hook(lambda mod, inp, out: grab.__setitem__("F", out))
    model.train()
    v = model(x)
    F = grab["F"]
    _, c, h, w = F.shape
    hw = h * w
    R, k = int(m["hidden"]), int(m["kernel"])
    net = RIHeads(h, w, c, D, R, k, m["bn_eps"], False, True).double()
    net.train()
    hf = np.fromfile(os.path.join(d, "heads.f32"), dtype="<f4").astype(np.float64)
    sizes = [hw * c, 1, R * c, R, c * R, c, k * k * 2, 1, 1, D * hw * c, D]

    def nhwc_to_nchw_cols(t):
        return t.reshape(t.shape[:-1] + (hw, c)).transpose(-1, -2).reshape(t.shape[:-1] + (c * hw,))

    def nchw_to_nhwc_cols(t):
        return t.reshape(t.shape[:-1] + (c, hw)).transpose(-1, -2).reshape(t.shape[:-1] + (hw * c,))

    p, at = [], 0
    for n in sizes:
        p.append(torch.from_numpy(hf[at:at + n].copy()))
        at += n
    with torch.no_grad():
        net.reg.weight.copy_(nhwc_to_nchw_cols(p[0].reshape(1, -1)))
        net.reg.bias.copy_(p[1])
        net.mlp[0].weight.copy_(p[2].reshape(R, c))
        net.mlp[0].bias.copy_(p[3])
        net.mlp[2].weight.copy_(p[4].reshape(c, R))
        net.mlp[2].bias.copy_(p[5])
        net.conv.weight.copy_(p[6].reshape(1, k, k, 2).permute(0, 3, 1, 2))
        net.bn.weight.copy_(p[7])
        net.bn.bias.copy_(p[8])
        net.fc.weight.copy_(nhwc_to_nchw_cols(p[9].reshape(D, hw * c)))
        net.fc.bias.copy_(p[10])

    ui = (flags & 1) != 0
    lab = ~ui & (y >= 0) & (y < C)
    xn = Fn.normalize(v, dim=1, eps=1e-5)
    arc = arcface_rows(xn[lab], head, y[lab], m["s"], m["m"]) / B

    with torch.no_grad():  # Eq. 1-3, detached targets
        cos = (Fn.normalize(v, dim=1, eps=1e-12) @ Fn.normalize(head, dim=1, eps=1e-12).t()).clamp(-1, 1)
        xi = torch.full((B,), float("nan"), dtype=dt)
        cn = Fn.normalize(centre, dim=0, eps=1e-12)
        d_ui = 1 - (Fn.normalize(v, dim=1, eps=1e-12) @ cn).clamp(-1, 1)
        for r in range(B):
            if lab[r]:
                d_p = 1 - cos[r, y[r]]
                neg = cos[r].clone()
                neg[y[r]] = -float("inf")
                d_n = 1 - neg.max().clamp(-1, 1)
                xi[r] = d_ui[r] * d_n / (d_p + 1e-7)
        vp = v - (v @ cn)[:, None] * cn[None, :]

    xi_hat, v_attn = net(F, v, torch.ones(B, hw * c, dtype=dt))
    zero = torch.zeros((), dtype=dt)
    r1 = ~ui & torch.isfinite(xi)
    l1 = Fn.smooth_l1_loss(xi_hat[r1], xi[r1], beta=m["l1_beta"]) if r1.any() else zero
    lid = torch.relu(m["tau"] - xi_hat[~ui]).mean() if (~ui).any() else zero
    mse = Fn.mse_loss(v_attn[~ui], vp[~ui]) if (~ui).any() else zero
    total = arc + m["alpha"] * l1 + m["beta"] * lid + m["gamma"] * mse
    total.backward()
    g = [to_f(q.grad).detach().reshape(-1).numpy() for q, to_f in params]
    g += [nchw_to_nhwc_cols(net.reg.weight.grad).reshape(-1).numpy(), net.reg.bias.grad.numpy(),
          net.mlp[0].weight.grad.reshape(-1).numpy(), net.mlp[0].bias.grad.numpy(),
          net.mlp[2].weight.grad.reshape(-1).numpy(), net.mlp[2].bias.grad.numpy(),
          net.conv.weight.grad.permute(0, 2, 3, 1).reshape(-1).numpy(), net.bn.weight.grad.numpy(),
          net.bn.bias.grad.numpy(), nchw_to_nhwc_cols(net.fc.weight.grad).reshape(-1).numpy(),
          net.fc.bias.grad.numpy()]
    np.concatenate(g).astype("<f8").tofile(os.path.join(d, "grads.f64"))
    np.array([total.item(), arc.item(), l1.item(), lid.item(), mse.item()], dtype="<f8").tofile(
        os.path.join(d, "loss.f64"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
