#!/usr/bin/python3
"""PyTorch autograd reference for faceri's ArcFace loss and optimizers (tests/test_train_torch.c).

Usage: arcface_reference.py DIR B D C S M
Reads DIR/x.f32 [B, D] (L2-normalised embeddings), DIR/w.f32 [C, D] (class weights),
DIR/y.i32 [B] (labels); writes DIR/out.f64 holding, in order:
  loss, dL/dx [B, D], dL/dW [C, D]                       (one forward/backward)
  SGD (lr 0.1, momentum 0.9, weight decay 5e-4): 3 losses, W after 3 steps [C, D]
  AdamW (lr 0.01, weight decay 0.01, clip_grad_norm_ 1.0): 3 losses, W after 3 steps
ArcFace is insightface arcface_torch's `ArcFace` module (th = cos(pi - m), mm = sin(pi -
m) * m, easy_margin off) on F.normalize'd class weights, then F.cross_entropy; all in
float64 so that the reference's own rounding is negligible next to the device's float32.
"""
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F


def arcface_loss(x, w, y, s, m):
    cos = x @ F.normalize(w, dim=1).t()
    idx = torch.arange(x.shape[0])
    target = cos[idx, y]
    sin_theta = torch.sqrt(1.0 - target * target)
    cos_theta_m = target * math.cos(m) - sin_theta * math.sin(m)
    final = torch.where(target > math.cos(math.pi - m), cos_theta_m, target - math.sin(math.pi - m) * m)
    logits = cos.clone()
    logits[idx, y] = final
    return F.cross_entropy(logits * s, y)


def train(x, w0, y, s, m, make_opt, clip):
    w = torch.nn.Parameter(w0.clone())
    opt = make_opt([w])
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = arcface_loss(x, w, y, s, m)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_([w], clip)
        opt.step()
        losses.append(loss.item())
    return losses, w.detach()


def main():
    d, B, D, C = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    s, m = float(sys.argv[5]), float(sys.argv[6])
    x = torch.from_numpy(np.fromfile(d + "/x.f32", dtype=np.float32).reshape(B, D).astype(np.float64))
    w0 = torch.from_numpy(np.fromfile(d + "/w.f32", dtype=np.float32).reshape(C, D).astype(np.float64))
    y = torch.from_numpy(np.fromfile(d + "/y.i32", dtype=np.int32).astype(np.int64))

    xv = x.clone().requires_grad_(True)
    wv = w0.clone().requires_grad_(True)
    loss = arcface_loss(xv, wv, y, s, m)
    loss.backward()
    out = [np.array([loss.item()]), xv.grad.numpy().ravel(), wv.grad.numpy().ravel()]

    sgd = lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4)
    adamw = lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.01)
    for make_opt, clip in ((sgd, 0.0), (adamw, 1.0)):
        losses, w = train(x, w0, y, s, m, make_opt, clip)
        out += [np.array(losses), w.numpy().ravel()]
    np.concatenate(out).astype(np.float64).tofile(d + "/out.f64")


if __name__ == "__main__":
    main()
