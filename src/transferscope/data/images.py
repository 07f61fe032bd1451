"""Image decoding and resizing with Pillow and numpy: every domain ends as uint8 (N, C, S, S)."""

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
