"""Image decoding and resizing with Pillow and numpy: every domain ends as uint8 (N, C, S, S); what that conversion
did to a domain's images is summed up by :func:`conversion_record`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def pil_to_array(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """Decode one image to a uint8 array (channels, size, size).

    Transparent images are composited on white; the image is padded to a square with the median
    colour of its border (so the object keeps its aspect ratio) and resized with Lanczos filtering.
    """
    has_alpha = img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    if w != h:
        a = np.asarray(img)
        border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).reshape(-1, channels)
        fill = tuple(int(v) for v in np.median(border, axis=0))
        side = max(w, h)
        canvas = Image.new(img.mode, (side, side), fill[0] if channels == 1 else fill)
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        img = canvas
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1).copy()


def resize_array(x: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Resize a batch of uint8 images (N, H, W) or (N, C, H, W) to (N, channels, size, size), vectorised.

    Grey images given RGB are repeated over channels; RGB images asked for grey use ITU-R 601 luma,
    as Pillow's ``convert("L")`` does.
    """
    if x.ndim == 3:
        x = x[:, None]
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.shape[1] == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        t = (t.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    elif t.shape[1] == 1 and channels == 3:
        t = t.expand(-1, 3, -1, -1)
    if t.shape[-2:] != (size, size):
        out = []
        for chunk in t.split(4096):
            f = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False)
            out.append(f.round().clamp(0, 255).to(torch.uint8))
        t = torch.cat(out)
    return t.contiguous().numpy()


TARGET_MODE = {1: "L", 3: "RGB"}
"""The colour mode (Pillow's name) every image is converted to, by the study's ``[data] channels``."""
MODE_NAMES = {"L": "grey", "RGB": "RGB"}
MAX_SIZES = 20
"""A conversion record lists at most this many original sizes (the most common); the rest are counted."""


def conversion_record(modes: np.ndarray, sizes: np.ndarray, channels: int, size: int) -> dict:
    """What bringing images of the colour ``modes`` (Pillow's names, e.g. ``L``, ``RGB``, ``RGBA``, ``P``) and the
    ``sizes`` (k, 2) (width, height) to ``channels`` x ``size`` x ``size`` does to them. Empty when nothing is
    converted; otherwise ``images`` (how many were loaded), ``converted`` (how many of them changed), and how:

    * ``colour``: ``{"from": {mode: images}, "to": "L" or "RGB"}``, the images whose mode is not the target's;
    * ``size``: ``{"from": {"WxH": images}, "to": "SxS", "padded": n}``, the images not at the target size, by
      their size (the :data:`MAX_SIZES` most common; ``"other": n`` counts the images of the other sizes), ``padded``
      those not square (padded to a square with their border's colour before the resize).
    """
    modes = np.asarray(modes).astype(str).reshape(-1)
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    target = TARGET_MODE[channels]
    record: dict = {}
    names, counts = np.unique(modes[modes != target], return_counts=True)
    if len(names):
        record["colour"] = {"from": {str(m): int(c) for m, c in zip(names, counts, strict=True)}, "to": target}
    off = sizes[(sizes[:, 0] != size) | (sizes[:, 1] != size)]
    if len(off):
        uniq, counts = np.unique(off, axis=0, return_counts=True)
        order = sorted(range(len(uniq)), key=lambda i: (-counts[i], tuple(uniq[i])))
        shown = order[:MAX_SIZES]
        record["size"] = {"from": {f"{uniq[i][0]}x{uniq[i][1]}": int(counts[i]) for i in shown},
                          "to": f"{size}x{size}", "padded": int(np.sum(off[:, 0] != off[:, 1]))}
        if len(order) > MAX_SIZES:
            record["size"]["other"] = int(sum(counts[i] for i in order[MAX_SIZES:]))
    if record:
        record["images"] = len(modes)
        record["converted"] = int(np.sum((modes != target) | (sizes[:, 0] != size) | (sizes[:, 1] != size)))
    return record


def describe_conversion(record: dict) -> str:
    """One line for the log, e.g. ``colour RGB (40) -> grey; size 20x20 (30), 24x16 (10) -> 16x16, 10 padded to a
    square first`` (numbers of images in brackets)."""
    parts = []
    if "colour" in record:
        c = record["colour"]
        froms = ", ".join(f"{MODE_NAMES.get(m, m)} ({n})" for m, n in c["from"].items())
        parts.append(f"colour {froms} -> {MODE_NAMES.get(c['to'], c['to'])}")
    if "size" in record:
        s = record["size"]
        items = list(s["from"].items())
        froms = ", ".join(f"{k} ({n})" for k, n in items[:5])
        rest = sum(n for _, n in items[5:]) + s.get("other", 0)
        if rest:
            froms += f", other sizes ({rest})"
        padded = f", {s['padded']} padded to a square first" if s["padded"] else ""
        parts.append(f"size {froms} -> {s['to']}{padded}")
    return "; ".join(parts)
