"""Visualisation for associative embedding: people, heatmaps, tag maps and per-person tag plots.

Used by the inference CLI, the notebook and TensorBoard logging. Images are drawn with OpenCV, plots with
matplotlib's object-oriented API (``matplotlib.figure.Figure`` on an Agg canvas): this module never imports
``pyplot``, so it opens no windows, changes no global backend and leaves no figures registered anywhere (a
returned Figure is freed like any Python object; nothing needs closing). In Jupyter a returned Figure shows
as the cell's value; for TensorBoard use ``writer.add_image(tag, figure_to_array(fig), step, dataformats="HWC")``.

Conventions
    Images are ``(H, W, 3)`` uint8 **RGB**. Keypoints are ``(x, y, score)`` in pixels of the image they are
    drawn on (original-image frame for predictions in COCO frame, input frame for the network input).
    Heatmaps / tag maps are ``(K, h, w)`` in heatmap pixels; ``overlay_heatmaps`` stretches them over the whole
    image, so they must cover the same field of view as the image (e.g. the network input they came from).
    Colours are RGB tuples of ints in ``[0, 255]``. Person ``i`` has the same colour in every function
    (``person_colors``), so a person in ``draw_people`` can be found again in ``plot_person_tags``.

Letters: N people, K keypoints, L tag dimensions, H x W image, h x w map.
"""

from __future__ import annotations

import colorsys
import functools
from collections.abc import Sequence

import cv2
import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

__all__ = [
    "MASK_COLOR",
    "draw_people",
    "figure_to_array",
    "heatmap_grid",
    "overlay_heatmaps",
    "person_colors",
    "plot_person_tags",
    "render_tag_map",
    "tag_grid",
    "track_color",
]

Color = tuple[int, int, int]

#: Colour of masked (low-heatmap) pixels in ``render_tag_map``: black.
MASK_COLOR: Color = (0, 0, 0)

# matplotlib's tab10 without its grey (index 7), which is hard to see on photos: 9 clearly distinct colours.
_BASE_PALETTE: tuple[Color, ...] = tuple(
    tuple(int(round(255 * c)) for c in matplotlib.colormaps["tab10"].colors[i]) for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)
)
_SHIFT = 4  # cv2 fixed-point fraction bits: sub-pixel placement of circles and lines
_MAX_COORD = 1 << 20  # clip absurd coordinates before the fixed-point conversion (cv2 takes int32)


# ---------------------------------------------------------------------------------------------------- helpers
def person_colors(n: int) -> list[Color]:
    """A fixed palette of ``n`` distinct RGB colours, one per person.

    The first 9 are matplotlib's ``tab10`` without its grey; later ones step the hue by the golden ratio and
    cycle saturation / brightness, so any two of the first 30 differ by > 30 in RGB (Euclidean distance). The
    palette is a prefix sequence: person ``i`` gets the same colour whatever ``n`` is
    (``person_colors(n)[i] == person_colors(m)[i]``).

    Args:
        n: number of colours, ``>= 0``.

    Returns:
        list of ``n`` ``(r, g, b)`` int tuples in ``[0, 255]``.

    Raises:
        ValueError: ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"person_colors: n must be >= 0, got {n}")
    out = list(_BASE_PALETTE[:n])
    for i in range(len(out), n):
        m = i - len(_BASE_PALETTE)
        hue = (0.13 + 0.618033988749895 * m) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, (0.95, 0.6, 0.8)[m % 3], (1.0, 0.7)[m % 2])
        out.append((int(round(255 * r)), int(round(255 * g)), int(round(255 * b))))
    return out


@functools.lru_cache(maxsize=4096)
def track_color(track_id: int) -> Color:
    """The RGB colour of track ``track_id`` (1-based), the same in every frame: ``person_colors`` entry
    ``track_id - 1`` (ids < 1 get entry 0).

    Returns:
        ``(r, g, b)`` ints in ``[0, 255]``.
    """
    i = max(0, int(track_id) - 1)
    return person_colors(i + 1)[i]


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be an (H, W, 3) RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 in [0, 255], got dtype {image.dtype}; convert it first")
    return image


def _colors_for(colors: object, n: int) -> list[Color]:
    """Per-person colours: ``None`` -> palette; one RGB triple -> that colour for everyone; else >= n triples."""
    if colors is None:
        return person_colors(n)
    arr = np.asarray(colors)
    if arr.ndim == 1 and arr.shape == (3,):
        arr = np.broadcast_to(arr, (n, 3))
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] < n:
        raise ValueError(
            f"colors must be one RGB triple or at least {n} RGB triples (one per person), got shape {arr.shape}"
        )
    return [tuple(int(v) for v in c) for c in arr[:n]]


def _colormap_rgb(values_u8: np.ndarray, colormap: str | int) -> np.ndarray:
    """Apply a matplotlib colormap (by name) or an OpenCV colormap (``cv2.COLORMAP_*`` int) to uint8 values.

    Returns ``values_u8.shape + (3,)`` uint8 RGB.
    """
    if isinstance(colormap, str):
        try:
            cmap = matplotlib.colormaps[colormap]
        except KeyError as e:
            raise ValueError(f"unknown matplotlib colormap {colormap!r}") from e
        lut = (cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)  # (256, 3)
        return lut[values_u8]
    bgr = cv2.applyColorMap(np.ascontiguousarray(values_u8), int(colormap))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _grid_shape(n: int, ncols: int | None) -> tuple[int, int]:
    ncols = int(ncols) if ncols else min(n, int(np.ceil(np.sqrt(n))) + 1)
    ncols = max(1, min(ncols, max(n, 1)))
    return int(np.ceil(max(n, 1) / ncols)), ncols


def _robust_range(values: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    """(vmin, vmax): given values win; otherwise the 2nd/98th percentiles of the finite values."""
    finite = values[np.isfinite(values)]
    lo, hi = np.percentile(finite, [2.0, 98.0]) if finite.size else (0.0, 1.0)
    lo = float(lo) if vmin is None else float(vmin)
    hi = float(hi) if vmax is None else float(vmax)
    if not hi > lo:  # constant map (or a bad explicit range): centre it
        lo, hi = lo - 0.5, lo + 0.5
    return lo, hi


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a matplotlib Figure to an RGB image (e.g. for TensorBoard ``add_image(..., dataformats="HWC")``).

    Figures from this module already have an Agg canvas; any other figure is given one (which detaches it from
    an interactive window, if it had one). The figure is left open; close pyplot figures yourself.

    Args:
        fig: the figure.

    Returns:
        ``(H, W, 3)`` uint8 RGB, ``H x W`` = figure size in inches times its dpi.

    Raises:
        ValueError: ``fig`` is not a matplotlib Figure.
    """
    if not isinstance(fig, Figure):
        raise ValueError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# ------------------------------------------------------------------------------------------------------ people
#: Drawing defaults of ``bottomup.api.Prediction.plot`` and ``python -m bottomup.infer``: people scoring below
#: ``min_score`` and joints at or below ``joint_threshold`` are not drawn; images with a longer side below
#: ``min_side`` pixels are upscaled first, so that joints and labels stay legible.
PLOT_DEFAULTS: dict[str, float] = {"min_score": 0.1, "joint_threshold": 0.1, "min_side": 640}


def draw_people(
    image: np.ndarray,
    keypoints: np.ndarray,
    skeleton: Sequence[tuple[int, int]],
    *,
    scores: np.ndarray | None = None,
    threshold: float = 0.0,
    colors: Sequence[Color] | Color | None = None,
    radius: int | None = None,
    thickness: int | None = None,
    draw_score_text: bool = True,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Draw people as coloured joints and limbs, one colour per person.

    All limbs of all people are drawn first, then all joints (filled circle in the person's colour with a
    1-px white rim), so a joint is hidden only by another person's joint. A limb is drawn when both its joints
    are drawn. Joints with ``score <= threshold`` or non-finite coordinates are skipped (with the default
    ``threshold=0`` the COCO visibility ``v=0``, "unlabeled", is not drawn). Coordinates are placed with
    sub-pixel precision (cv2 fixed point, anti-aliased). With ``scores`` and ``draw_score_text`` each person's
    score is written (in its colour, black outline) just above its highest drawn joint.

    Args:
        image: ``(H, W, 3)`` uint8 RGB; not modified.
        keypoints: ``(N, K, C>=3)`` float, ``(x, y, score-or-visibility)`` in pixels of ``image``; extra
            columns (e.g. tags) are ignored. ``N = 0`` returns a copy of the image.
        skeleton: limbs as ``(a, b)`` joint indices in ``[0, K)`` (``KeypointLayout.skeleton_index``).
        scores: ``(N,)`` per-person scores for the text label, or ``None``.
        threshold: joints with score ``<= threshold`` are not drawn.
        colors: ``None`` (``person_colors(N)``), one RGB triple for everyone, or ``>= N`` RGB triples.
        radius: joint radius in pixels; ``None`` = ``max(2, round(0.006 * max(H, W)))`` (4 px at 640).
        thickness: limb width in pixels; ``None`` = ``max(1, round(0.004 * max(H, W)))`` (3 px at 640).
        draw_score_text: write the score of each person when ``scores`` is given.
        labels: ``N`` texts written instead of the scores (e.g. track ids), or ``None``.

    Returns:
        a new ``(H, W, 3)`` uint8 RGB image.

    Raises:
        ValueError: bad ``image``, ``keypoints``, ``skeleton``, ``scores`` or ``colors`` shape / values.
    """
    image = _check_image(image)
    kpts = np.asarray(keypoints, dtype=np.float64)
    if kpts.ndim != 3 or kpts.shape[2] < 3:
        raise ValueError(f"keypoints must be (N, K, 3) (x, y, score), got shape {kpts.shape}")
    n, k = kpts.shape[:2]
    limbs = [(int(a), int(b)) for a, b in skeleton]
    for a, b in limbs:
        if not (0 <= a < k and 0 <= b < k):
            raise ValueError(f"skeleton limb ({a}, {b}) has a joint index outside [0, {k}) for K={k} keypoints")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape != (n,):
            raise ValueError(f"scores must be (N,) = ({n},) one per person, got {scores.shape}")
    if labels is not None:
        labels = [str(t) for t in labels]
        if len(labels) != n:
            raise ValueError(f"labels must be N = {n} texts, one per person, got {len(labels)}")
    palette = _colors_for(colors, n)
    out = image.copy()
    if n == 0:
        return out

    h, w = image.shape[:2]
    side = max(h, w)
    radius = max(2, round(0.006 * side)) if radius is None else int(radius)
    thickness = max(1, round(0.004 * side)) if thickness is None else int(thickness)
    xy = kpts[..., :2]
    shown = np.isfinite(xy).all(-1) & np.isfinite(kpts[..., 2]) & (kpts[..., 2] > threshold)  # (N, K)
    fixed = np.round(np.clip(np.nan_to_num(xy), -_MAX_COORD, _MAX_COORD) * (1 << _SHIFT)).astype(np.int64)

    def pt(i: int, j: int) -> tuple[int, int]:
        return int(fixed[i, j, 0]), int(fixed[i, j, 1])

    for i in range(n):
        for a, b in limbs:
            if shown[i, a] and shown[i, b]:
                cv2.line(out, pt(i, a), pt(i, b), palette[i], thickness, cv2.LINE_AA, _SHIFT)
    r_fixed = radius << _SHIFT
    for i in range(n):
        for j in np.flatnonzero(shown[i]):
            cv2.circle(out, pt(i, j), r_fixed, palette[i], -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(out, pt(i, j), r_fixed, (255, 255, 255), 1, cv2.LINE_AA, _SHIFT)
    texts = labels if labels is not None else [f"{v:.2f}" for v in scores] if scores is not None else None
    if texts is not None and draw_score_text:
        font_scale = max(0.35, side / 1300.0)
        font_thick = max(1, round(side / 640.0))
        for i in range(n):
            if not shown[i].any():
                continue
            pts = xy[i][shown[i]]
            top = int(np.argmin(pts[:, 1]))
            text = texts[i]
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thick)
            x = int(np.clip(pts[top, 0] - tw / 2, 0, max(0, w - tw)))
            y = int(np.clip(pts[top, 1] - radius - 4, th + 1, h - 1))
            cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), font_thick + 2, cv2.LINE_AA)
            cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, palette[i], font_thick, cv2.LINE_AA)
    return out


# ---------------------------------------------------------------------------------------------------- heatmaps
def _check_maps(maps: np.ndarray, name: str) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3 or maps.shape[0] == 0 or maps.shape[1] == 0 or maps.shape[2] == 0:
        raise ValueError(f"{name} must be (K, h, w) (or one (h, w) map), got shape {maps.shape}")
    return maps


def overlay_heatmaps(
    image: np.ndarray,
    heatmaps: np.ndarray,
    joint: int | None = None,
    *,
    alpha: float = 0.5,
    colormap: str | int = "jet",
    scale_alpha: bool = True,
) -> np.ndarray:
    """Blend heatmaps, coloured by a colormap, over an image.

    The selected map (``heatmaps[joint]``, or the maximum over joints when ``joint is None``) is clipped to
    ``[0, 1]``, resized to ``H x W`` with ``cv2.resize`` (bilinear; the map must cover the same field of view as
    the image) and coloured. With ``scale_alpha`` (default) the blend weight of a pixel is ``alpha * value``,
    so the image stays untouched where the heatmap is 0 and peaks are tinted most; with ``scale_alpha=False``
    every pixel is blended with the same weight ``alpha`` (the official HigherHRNet debug style).

    Args:
        image: ``(H, W, 3)`` uint8 RGB; not modified.
        heatmaps: ``(K, h, w)`` float, expected in ``[0, 1]`` (values outside are clipped), any resolution;
            one ``(h, w)`` map is accepted as ``K = 1``.
        joint: channel to show, or ``None`` for the maximum over channels.
        alpha: blend weight in ``[0, 1]``.
        colormap: matplotlib colormap name or OpenCV ``cv2.COLORMAP_*`` int.
        scale_alpha: weight the blend by the heatmap value (see above).

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Raises:
        ValueError: bad ``image`` or ``heatmaps`` shape, ``joint`` out of range, ``alpha`` outside ``[0, 1]``,
            unknown colormap name.
    """
    image = _check_image(image)
    maps = _check_maps(heatmaps, "heatmaps")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if joint is None:
        heat = maps.max(axis=0)
    else:
        if not -maps.shape[0] <= joint < maps.shape[0]:
            raise ValueError(f"joint {joint} out of range for {maps.shape[0]} heatmaps")
        heat = maps[joint]
    heat = np.clip(np.nan_to_num(heat), 0.0, 1.0)
    h, w = image.shape[:2]
    heat = np.clip(cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    color = _colormap_rgb((heat * 255.0 + 0.5).astype(np.uint8), colormap).astype(np.float32)
    weight = (alpha * heat)[..., None] if scale_alpha else np.float32(alpha)
    out = image.astype(np.float32) * (1.0 - weight) + color * weight
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def heatmap_grid(
    maps: np.ndarray,
    names: Sequence[str],
    *,
    image: np.ndarray | None = None,
    ncols: int | None = None,
    colormap: str = "viridis",
    vmin: float = 0.0,
    vmax: float = 1.0,
    panel_size: float = 2.2,
    title: str | None = None,
) -> Figure:
    """A grid of per-joint heatmaps, one panel per joint titled with its name.

    Without ``image`` each panel shows the raw map (``imshow`` with ``[vmin, vmax]`` and a shared colorbar);
    with ``image`` each panel is ``overlay_heatmaps(image, maps, joint=k, colormap="jet")``.

    Args:
        maps: ``(K, h, w)`` float heatmaps (heatmap pixels).
        names: K joint names (``KeypointLayout.keypoint_names``).
        image: optional ``(H, W, 3)`` uint8 RGB covering the same view as the maps.
        ncols: panels per row; ``None`` picks about ``sqrt(K) + 1``.
        colormap: matplotlib colormap of the raw maps.
        vmin, vmax: colour range of the raw maps.
        panel_size: inches per panel width (height follows the maps' aspect ratio).
        title: figure title.

    Returns:
        a ``matplotlib.figure.Figure`` with K image axes (+ a colorbar axis without ``image``).

    Raises:
        ValueError: ``maps`` not ``(K, h, w)``, ``len(names) != K``, bad ``image``.
    """
    maps = _check_maps(maps, "maps")
    k = maps.shape[0]
    if len(names) != k:
        raise ValueError(f"names has {len(names)} entries for {k} maps; give one name per joint")
    if image is not None:
        image = _check_image(image)
    rows, cols = _grid_shape(k, ncols)
    aspect = maps.shape[1] / maps.shape[2] if image is None else image.shape[0] / image.shape[1]
    fig = _new_figure(panel_size * cols + (0.0 if image is not None else 0.8), (panel_size * aspect + 0.3) * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    im = None
    for idx, ax in enumerate(axes.ravel()):
        if idx >= k:
            ax.remove()
            continue
        if image is not None:
            ax.imshow(overlay_heatmaps(image, maps, joint=idx, colormap="jet"))
        else:
            im = ax.imshow(maps[idx], cmap=colormap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{names[idx]} ({maps[idx].max():.2f})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if im is not None:
        fig.colorbar(im, ax=axes.ravel()[:k].tolist(), shrink=0.8, label="heatmap")
    if title:
        fig.suptitle(title)
    return fig


# -------------------------------------------------------------------------------------------------------- tags
def render_tag_map(
    tags: np.ndarray,
    heatmap: np.ndarray | None = None,
    *,
    threshold: float = 0.1,
    vmin: float | None = None,
    vmax: float | None = None,
    colormap: str | int = "rainbow",
    mask_color: Color = MASK_COLOR,
) -> np.ndarray:
    """Colour a tag map by tag value, masking pixels where no joint is.

    Pixels with ``heatmap <= threshold`` (and non-finite tags) are set exactly to ``mask_color`` (default
    black, ``MASK_COLOR``); all others map ``[vmin, vmax]`` linearly onto the colormap (values outside are
    clipped). Defaults of ``vmin`` / ``vmax``: 2nd / 98th percentile of the unmasked tags (all tags when
    everything is masked); a constant map is centred in a range of width 1. The default ``rainbow`` colormap
    starts at purple, so no tag colour is black.

    Args:
        tags: ``(h, w)`` float tag values (one tag dimension; ``(1, h, w)`` accepted). Pick a channel first for
            ``L > 1``.
        heatmap: ``(h, w)`` float heatmap of the same joint at the same resolution, or ``None`` (no mask).
        threshold: mask pixels with heatmap ``<=`` this.
        vmin, vmax: colour range; use the same range for maps you want to compare (see ``tag_grid``).
        colormap: matplotlib colormap name or ``cv2.COLORMAP_*`` int.
        mask_color: RGB of masked pixels.

    Returns:
        ``(h, w, 3)`` uint8 RGB at tag-map resolution (upscale with ``cv2.INTER_NEAREST`` if needed).

    Raises:
        ValueError: ``tags`` not ``(h, w)`` or ``heatmap`` of another shape.
    """
    tags = np.asarray(tags, dtype=np.float64)
    if tags.ndim == 3 and tags.shape[0] == 1:
        tags = tags[0]
    if tags.ndim != 2 or tags.size == 0:
        raise ValueError(f"tags must be one (h, w) tag map, got shape {tags.shape}; pick one joint / tag dim")
    keep = np.isfinite(tags)
    if heatmap is not None:
        heatmap = np.asarray(heatmap, dtype=np.float64)
        if heatmap.ndim == 3 and heatmap.shape[0] == 1:
            heatmap = heatmap[0]
        if heatmap.shape != tags.shape:
            raise ValueError(f"heatmap must have the tags' shape {tags.shape}, got {heatmap.shape}")
        keep &= np.nan_to_num(heatmap, nan=-np.inf) > threshold
    lo, hi = _robust_range(tags[keep] if keep.any() else tags, vmin, vmax)
    scaled = np.clip((np.nan_to_num(tags, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    out = _colormap_rgb((scaled * 255.0 + 0.5).astype(np.uint8), colormap)
    out[~keep] = np.asarray(mask_color, dtype=np.uint8)
    return out


def tag_grid(
    tags: np.ndarray,
    names: Sequence[str],
    heatmaps: np.ndarray | None = None,
    *,
    threshold: float = 0.1,
    vmin: float | None = None,
    vmax: float | None = None,
    colormap: str = "rainbow",
    ncols: int | None = None,
    panel_size: float = 2.2,
    title: str | None = None,
) -> Figure:
    """A grid of per-joint tag maps (``render_tag_map``), masked where the joint's heatmap is low.

    All panels share one colour range (default: 2nd / 98th percentile of the unmasked tags of *all* joints), so
    the same colour means the same tag in every panel: one person should have one colour across joints.
    Masked pixels are black. A colorbar shows the tag scale.

    Args:
        tags: ``(K, h, w)`` float, one tag dimension per joint (for ``tag_dim > 1`` pass one dimension).
        names: K joint names.
        heatmaps: ``(K, h, w)`` float at the tags' resolution, or ``None`` (nothing masked).
        threshold, colormap: as in ``render_tag_map``.
        vmin, vmax: shared colour range.
        ncols, panel_size, title: layout as in ``heatmap_grid``.

    Returns:
        a ``matplotlib.figure.Figure`` with K image axes and a colorbar axis.

    Raises:
        ValueError: ``tags`` not ``(K, h, w)``, ``heatmaps`` of another shape, ``len(names) != K``.
    """
    tags = _check_maps(tags, "tags").astype(np.float64)
    k = tags.shape[0]
    if len(names) != k:
        raise ValueError(f"names has {len(names)} entries for {k} tag maps; give one name per joint")
    keep = np.isfinite(tags)
    if heatmaps is not None:
        heatmaps = _check_maps(heatmaps, "heatmaps")
        if heatmaps.shape != tags.shape:
            raise ValueError(f"heatmaps must have the tags' shape {tags.shape}, got {heatmaps.shape}")
        keep &= heatmaps > threshold
    lo, hi = _robust_range(tags[keep] if keep.any() else tags, vmin, vmax)
    rows, cols = _grid_shape(k, ncols)
    fig = _new_figure(panel_size * cols + 0.8, (panel_size * tags.shape[1] / tags.shape[2] + 0.3) * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    for idx, ax in enumerate(axes.ravel()):
        if idx >= k:
            ax.remove()
            continue
        heat = None if heatmaps is None else heatmaps[idx]
        rgb = render_tag_map(tags[idx], heat, threshold=threshold, vmin=lo, vmax=hi, colormap=colormap)
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(names[idx], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    mappable = ScalarMappable(norm=Normalize(lo, hi), cmap=matplotlib.colormaps[colormap])
    fig.colorbar(mappable, ax=axes.ravel()[:k].tolist(), shrink=0.8, label="tag (masked: black)")
    if title:
        fig.suptitle(title)
    return fig


def plot_person_tags(
    tags_per_person: np.ndarray,
    names: Sequence[str],
    scores: np.ndarray | None = None,
    colors: Sequence[Color] | None = None,
    *,
    dim: int | None = None,
    title: str | None = None,
) -> Figure:
    """Strip plot of the tag of every detected joint, one colour per person: shows pull and push at a glance.

    x = joint (names on the axis), y = tag value; each person's points are shifted slightly sideways so people
    do not hide each other, and the person's mean tag is a horizontal dashed line in the same colour. Good
    embeddings give tight clusters per person (pull) with lines far apart (push). The title reports the mean
    within-person standard deviation (pull) and the smallest gap between person means (push).

    Args:
        tags_per_person: ``(N, K)`` float, tag of person ``n`` at joint ``k``, NaN where the joint is missing;
            or ``(N, K, L)`` (``L > 1`` e.g. with flip test, which concatenates the original and flipped tags):
            then the mean over ``L`` is plotted, or dimension ``dim`` when given.
        names: K joint names.
        scores: ``(N,)`` person scores shown in the legend, or ``None``.
        colors: ``>= N`` RGB triples; ``None`` = ``person_colors(N)`` (same as ``draw_people``).
        dim: with ``L > 1``, the tag dimension to plot; ``None`` = mean over ``L``.
        title: text before the pull/push summary.

    Returns:
        a ``matplotlib.figure.Figure`` with one axis.

    Raises:
        ValueError: ``tags_per_person`` not ``(N, K)`` / ``(N, K, L)``, ``len(names) != K``, ``scores`` not
            ``(N,)``, ``dim`` out of range, bad ``colors``.
    """
    tags = np.asarray(tags_per_person, dtype=np.float64)
    if tags.ndim == 3:
        if dim is None:
            finite = np.isfinite(tags)
            count = finite.sum(axis=2)
            total = np.where(finite, tags, 0.0).sum(axis=2)
            tags = np.where(count > 0, total / np.maximum(count, 1), np.nan)  # NaN-ignoring mean over L
        elif not -tags.shape[2] <= dim < tags.shape[2]:
            raise ValueError(f"dim {dim} out of range for L={tags.shape[2]} tag dimensions")
        else:
            tags = tags[..., dim]
    if tags.ndim != 2:
        raise ValueError(f"tags_per_person must be (N, K) or (N, K, L), got shape {np.shape(tags_per_person)}")
    n, k = tags.shape
    if len(names) != k:
        raise ValueError(f"names has {len(names)} entries for K={k} joints of tags_per_person")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape != (n,):
            raise ValueError(f"scores must be (N,) = ({n},) one per person, got {scores.shape}")
    palette = np.asarray(_colors_for(colors, n), dtype=np.float64).reshape(n, 3) / 255.0

    fig = _new_figure(max(6.0, 0.45 * k + 1.5), 4.0)
    ax = fig.add_subplot()
    offsets = (np.arange(n) - (n - 1) / 2.0) * (0.5 / max(n, 1))
    x = np.arange(k, dtype=np.float64)
    means, spreads = [], []
    for i in range(n):
        row = tags[i]
        ok = np.isfinite(row)
        label = f"person {i}" + ("" if scores is None else f" ({scores[i]:.2f})")
        if not ok.any():
            continue
        color = palette[i]
        ax.scatter(x[ok] + offsets[i], row[ok], color=color, s=22, edgecolors="black", linewidths=0.4, zorder=3)
        mean = float(row[ok].mean())
        means.append(mean)
        spreads.append(float(row[ok].std()))
        ax.axhline(mean, color=color, linestyle="--", linewidth=1.2, label=label, zorder=2)
    ax.set_xticks(x)
    ax.set_xticklabels(list(names), rotation=60, ha="right", fontsize=8)
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_ylabel("tag value")
    ax.grid(axis="y", alpha=0.3)
    summary = "no detected joints"
    if means:
        summary = f"pull: mean within-person std {np.mean(spreads):.3f}"
        if len(means) > 1:
            summary += f"; push: min gap between means {np.diff(np.sort(means)).min():.3f}"
        if n <= 12:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(f"{title}\n{summary}" if title else summary, fontsize=9)
    return fig
