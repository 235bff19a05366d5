"""Tests for bottomup.vis.draw on real coco-mini images and their real annotations (pycocotools)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from pycocotools.coco import COCO

from bottomup.codec.targets import render_heatmaps
from bottomup.vis.draw import (
    MASK_COLOR,
    draw_people,
    figure_to_array,
    heatmap_grid,
    overlay_heatmaps,
    person_colors,
    plot_person_tags,
    render_tag_map,
    tag_grid,
)

CROWDED_IMAGE = 350679  # val2017: 8 people with >= 9 labeled keypoints each
STRIDE = 4


@pytest.fixture(scope="module")
def coco_val(coco_root: Path) -> COCO:
    return COCO(str(coco_root / "annotations" / "person_keypoints_val2017.json"))


def _load(coco: COCO, root: Path, image_id: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB image and (N, 17, 3) keypoints of its non-crowd people with at least one labeled joint."""
    info = coco.imgs[image_id]
    bgr = cv2.imread(str(root / "val2017" / info["file_name"]))
    assert bgr is not None, info["file_name"]
    anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)) if a["num_keypoints"] > 0]
    kpts = np.array([a["keypoints"] for a in anns], dtype=np.float32).reshape(len(anns), -1, 3)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), kpts


@pytest.fixture(scope="module")
def crowd(coco_val: COCO, coco_root: Path) -> tuple[np.ndarray, np.ndarray]:
    image, kpts = _load(coco_val, coco_root, CROWDED_IMAGE)
    assert kpts.shape[0] >= 5
    return image, kpts


def _auto_sizes(image: np.ndarray) -> tuple[int, int]:
    side = max(image.shape[:2])
    return max(2, round(0.006 * side)), max(1, round(0.004 * side))


def _pixel(img: np.ndarray, x: float, y: float) -> np.ndarray:
    return img[int(np.floor(y)), int(np.floor(x))].astype(np.int64)


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * ab)))


def _drawn_parts(kpts: np.ndarray, skeleton, shown: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Segments (joints as zero-length segments) of one person's drawn joints and limbs."""
    parts = [(kpts[j, :2], kpts[j, :2]) for j in np.flatnonzero(shown)]
    parts += [(kpts[a, :2], kpts[b, :2]) for a, b in skeleton if shown[a] and shown[b]]
    return parts


# ------------------------------------------------------------------------------------------------ draw_people
def test_draw_people_keeps_size_and_input(crowd, coco_layout):
    image, kpts = crowd
    before, kpts_before = image.copy(), kpts.copy()
    out = draw_people(image, kpts, coco_layout.skeleton_index, scores=np.linspace(0.2, 0.9, len(kpts)))
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(image, before)
    np.testing.assert_array_equal(kpts, kpts_before)
    assert not np.array_equal(out, image)


def test_labeled_keypoints_take_their_persons_colour(crowd, coco_layout):
    image, kpts = crowd
    colors = person_colors(len(kpts))
    out = draw_people(image, kpts, coco_layout.skeleton_index)
    radius, _ = _auto_sizes(image)
    labeled = kpts[..., 2] > 0
    checked = 0
    for i, j in zip(*np.nonzero(labeled), strict=True):
        p = kpts[i, j, :2]
        others = labeled.copy()
        others[i, j] = False
        if np.linalg.norm(kpts[others][:, :2] - p, axis=1).min() <= 2 * radius + 2:
            continue  # another joint's circle or white rim (drawn later) may cover this one
        np.testing.assert_allclose(_pixel(out, *p), colors[i], atol=3, err_msg=f"person {i} joint {j}")
        checked += 1
    assert checked >= 40


def test_limb_midpoints_are_coloured(crowd, coco_layout):
    image, kpts = crowd
    radius, _ = _auto_sizes(image)
    colors = person_colors(len(kpts))
    checked = 0
    for i in range(len(kpts)):
        alone = draw_people(image, kpts[i : i + 1], coco_layout.skeleton_index, colors=[colors[i]])
        for a, b in coco_layout.skeleton_index:
            if kpts[i, a, 2] > 0 and kpts[i, b, 2] > 0:
                mid = (kpts[i, a, :2] + kpts[i, b, :2]) / 2
                if np.linalg.norm(kpts[i, kpts[i, :, 2] > 0, :2] - mid, axis=1).min() <= radius + 2:
                    continue  # inside or on the white rim of a joint circle
                np.testing.assert_allclose(_pixel(alone, *mid), colors[i], atol=40, err_msg=f"person {i} limb {a}-{b}")
                checked += 1
    assert checked >= 20


@pytest.mark.parametrize("how", ["visibility", "score"])
def test_unlabeled_or_low_score_joints_not_drawn(crowd, coco_layout, how):
    """Drop each labeled joint in turn (v=0, or a score below the threshold): far from the person's remaining
    drawing, the image is unchanged at the dropped joint; drawing it back changes that pixel."""
    image, kpts = crowd
    radius, thickness = _auto_sizes(image)
    threshold = 0.0 if how == "visibility" else 0.3
    margin = radius + thickness + 3
    skeleton = coco_layout.skeleton_index
    checked = 0
    for i in range(len(kpts)):
        person = kpts[i : i + 1].copy()
        if how == "score":
            person[..., 2] = np.where(person[..., 2] > 0, 0.9, 0.0)
        for j in np.flatnonzero(person[0, :, 2] > 0):
            dropped = person.copy()
            dropped[0, j, 2] = 0.0 if how == "visibility" else 0.2  # <= threshold: not drawn
            shown = dropped[0, :, 2] > threshold
            p = person[0, j, :2]
            if any(_seg_dist(p, a, b) <= margin for a, b in _drawn_parts(dropped[0], skeleton, shown)):
                continue
            out = draw_people(image, dropped, skeleton, threshold=threshold)
            np.testing.assert_array_equal(_pixel(out, *p), _pixel(image, *p))
            full = draw_people(image, person, skeleton, threshold=threshold)
            assert not np.array_equal(_pixel(full, *p), _pixel(image, *p))
            checked += 1
    assert checked >= 5
    # COCO puts unlabeled joints at (0, 0): the corner stays as it was when every person is drawn
    assert (kpts[..., 2] == 0).any()
    out = draw_people(image, kpts, skeleton)
    np.testing.assert_array_equal(out[:3, :3], image[:3, :3])


def test_people_get_different_colours(crowd, coco_layout):
    image, kpts = crowd
    colors = np.array(person_colors(30))
    dist = np.linalg.norm(colors[:, None].astype(float) - colors[None].astype(float), axis=-1)
    assert dist[~np.eye(30, dtype=bool)].min() > 30
    assert person_colors(3) == person_colors(30)[:3]
    # the drawn joints of two people (their most isolated labeled joints) have different colours
    out = draw_people(image, kpts, coco_layout.skeleton_index)
    j0 = int(np.flatnonzero(kpts[0, :, 2] > 0)[0])
    j1 = int(np.flatnonzero(kpts[1, :, 2] > 0)[0])
    assert np.abs(_pixel(out, *kpts[0, j0, :2]) - _pixel(out, *kpts[1, j1, :2])).max() > 30


def test_draw_people_bad_input(crowd, coco_layout):
    image, kpts = crowd
    with pytest.raises(ValueError, match="image"):
        draw_people(image[..., 0], kpts, coco_layout.skeleton_index)
    with pytest.raises(ValueError, match="image"):
        draw_people(image.astype(np.float32), kpts, coco_layout.skeleton_index)
    with pytest.raises(ValueError, match="keypoints"):
        draw_people(image, kpts[..., :2], coco_layout.skeleton_index)
    with pytest.raises(ValueError, match="skeleton"):
        draw_people(image, kpts[:, :5], coco_layout.skeleton_index)
    with pytest.raises(ValueError, match="scores"):
        draw_people(image, kpts, coco_layout.skeleton_index, scores=np.ones(len(kpts) + 1))
    with pytest.raises(ValueError, match="colors"):
        draw_people(image, kpts, coco_layout.skeleton_index, colors=[(255, 0, 0)])
    empty = draw_people(image, np.zeros((0, 17, 3)), coco_layout.skeleton_index)
    np.testing.assert_array_equal(empty, image)


# --------------------------------------------------------------------------------------------------- heatmaps
def _heatmaps(image: np.ndarray, kpts: np.ndarray) -> np.ndarray:
    h, w = image.shape[0] // STRIDE, image.shape[1] // STRIDE
    scaled = kpts.copy()
    scaled[..., :2] /= STRIDE
    return render_heatmaps(scaled, h, w, sigma=2.0)


def test_overlay_heatmaps_changes_peaks_more_than_background(crowd):
    image, kpts = crowd
    hm = _heatmaps(image, kpts)
    before = image.copy()
    i, j = map(int, np.argwhere(kpts[..., 2] > 0)[0])
    for joint in (None, j):
        out = overlay_heatmaps(image, hm, joint)
        assert out.shape == image.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(image, before)
        change = np.abs(out.astype(int) - image.astype(int)).sum(-1)
        peak = change[int(kpts[i, j, 1]), int(kpts[i, j, 0])]
        assert peak > 60
        # where every resized heatmap is 0 the image is untouched (blend weight alpha * value)
        big = cv2.resize(hm.max(0), (image.shape[1], image.shape[0]))
        assert (big == 0).mean() > 0.5
        assert change[big == 0].max() == 0
    uniform = overlay_heatmaps(image, hm, j, scale_alpha=False, colormap=cv2.COLORMAP_JET)
    assert np.abs(uniform.astype(int) - image.astype(int)).sum(-1).mean() > 20
    with pytest.raises(ValueError, match="heatmaps"):
        overlay_heatmaps(image, hm[None])
    with pytest.raises(ValueError, match="joint"):
        overlay_heatmaps(image, hm, joint=17)
    with pytest.raises(ValueError, match="image"):
        overlay_heatmaps(image[:, :, :2], hm)


# -------------------------------------------------------------------------------------------------------- tags
def _ideal_tags(hm_people: np.ndarray, person_tags: np.ndarray) -> np.ndarray:
    """(K, h, w) tags: each pixel holds the tag of the person whose Gaussian is strongest there."""
    return person_tags[hm_people.argmax(0)]


def test_render_tag_map_masks_low_heatmap_and_varies_with_tag(crowd):
    image, kpts = crowd
    people = np.stack([_heatmaps(image, kpts[i : i + 1]) for i in range(len(kpts))])  # (N, K, h, w)
    hm = people.max(0)
    person_tags = np.linspace(-1.0, 1.0, len(kpts))
    tags = _ideal_tags(people, person_tags)
    j = int(np.argmax((kpts[..., 2] > 0).sum(0)))  # the joint labeled for most people
    rgb = render_tag_map(tags[j], hm[j], threshold=0.1)
    assert rgb.shape == (*tags.shape[1:], 3) and rgb.dtype == np.uint8
    low = hm[j] <= 0.1
    assert low.any() and (~low).any()
    assert (rgb[low] == MASK_COLOR).all()
    assert not (rgb[~low] == MASK_COLOR).all(-1).any()  # no visible tag is drawn in the mask colour
    # at each labeled joint's peak: the colour follows the person's tag, different people -> different colours
    peaks = {}
    for i in np.flatnonzero(kpts[:, j, 2] > 0):
        x, y = (kpts[i, j, :2] / STRIDE).astype(int)
        if people[i, j, y, x] == hm[j, y, x]:
            peaks[i] = rgb[y, x].astype(int)
    assert len(peaks) >= 3
    cols = list(peaks.values())
    assert min(np.abs(a - b).max() for n, a in enumerate(cols) for b in cols[n + 1 :]) > 10
    # one constant tag everywhere: a single colour where visible
    flat = render_tag_map(np.full_like(tags[j], 0.3), hm[j])
    assert len(np.unique(flat[~low].reshape(-1, 3), axis=0)) == 1
    assert render_tag_map(tags[j]).reshape(-1, 3).any(-1).all()  # no heatmap: nothing masked
    with pytest.raises(ValueError, match="tags"):
        render_tag_map(tags)
    with pytest.raises(ValueError, match="heatmap"):
        render_tag_map(tags[j], hm[j, :-1])


# -------------------------------------------------------------------------------------------------- figures
def _image_axes(fig: Figure) -> int:
    return sum(1 for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>")


def _assert_non_blank(arr: np.ndarray, fig: Figure) -> None:
    w, h = fig.get_size_inches() * fig.dpi
    assert arr.shape == (round(h), round(w), 3) and arr.dtype == np.uint8
    assert (arr < 250).any(-1).mean() > 0.05  # more than a white canvas


def test_heatmap_and_tag_grids(crowd, coco_layout):
    image, kpts = crowd
    names = coco_layout.keypoint_names
    people = np.stack([_heatmaps(image, kpts[i : i + 1]) for i in range(len(kpts))])
    hm = people.max(0)
    tags = _ideal_tags(people, np.linspace(-1.0, 1.0, len(kpts)))
    for fig in (
        heatmap_grid(hm, names, title="heatmaps"),
        heatmap_grid(hm, names, image=image, ncols=5),
        tag_grid(tags, names, hm),
    ):
        assert isinstance(fig, Figure)
        assert _image_axes(fig) == len(names)
        _assert_non_blank(figure_to_array(fig), fig)
    fig = tag_grid(tags, names, hm)
    masked = [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]
    assert all((m[hm[k] <= 0.1] == MASK_COLOR).all() for k, m in enumerate(masked))
    with pytest.raises(ValueError, match="names"):
        heatmap_grid(hm, names[:-1])
    with pytest.raises(ValueError, match="maps"):
        heatmap_grid(hm[None], names)
    with pytest.raises(ValueError, match="heatmaps"):
        tag_grid(tags, names, hm[:, :-1])
    with pytest.raises(ValueError, match="names"):
        tag_grid(tags, names[:3], hm)


def _real_tags_per_person(kpts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, K) tags at the labeled joints of the real people (one value per person + noise), NaN elsewhere."""
    base = np.linspace(-1.0, 1.0, len(kpts))[:, None] + rng.normal(0.0, 0.05, kpts.shape[:2])
    return np.where(kpts[..., 2] > 0, base, np.nan)


def test_plot_person_tags(crowd, coco_layout):
    _, kpts = crowd
    names = coco_layout.keypoint_names
    rng = np.random.default_rng(0)
    tags = _real_tags_per_person(kpts, rng)
    tags[0] = np.nan  # a person with no detected joint: no points, no mean line
    fig = plot_person_tags(tags, names, scores=np.linspace(0.3, 0.9, len(kpts)))
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(scatters) == len(kpts) - 1
    assert sum(len(c.get_offsets()) for c in scatters) == int(np.isfinite(tags).sum())
    means = sorted(line.get_ydata()[0] for line in ax.get_lines())
    np.testing.assert_allclose(means, sorted(np.nanmean(tags[1:], axis=1)), atol=1e-9)
    colors = np.array(person_colors(len(kpts))[1:]) / 255.0
    np.testing.assert_allclose([c.get_facecolor()[0, :3] for c in scatters], colors, atol=1e-6)
    _assert_non_blank(figure_to_array(fig), fig)
    # L = 2 (flip test): the mean over L is plotted, or one dimension with dim=
    both = np.stack([tags, tags + 0.2], axis=-1)
    for dim, expected in ((None, tags + 0.1), (1, tags + 0.2)):
        ax = plot_person_tags(both, names, dim=dim).axes[0]
        ys = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if isinstance(c, PathCollection)])
        np.testing.assert_allclose(np.sort(ys), np.sort(expected[np.isfinite(expected)]), atol=1e-9)
    with pytest.raises(ValueError, match="tags_per_person"):
        plot_person_tags(tags[0], names)
    with pytest.raises(ValueError, match="names"):
        plot_person_tags(tags, names[:-1])
    with pytest.raises(ValueError, match="scores"):
        plot_person_tags(tags, names, scores=np.ones(2))
    with pytest.raises(ValueError, match="dim"):
        plot_person_tags(both, names, dim=2)


def test_figure_to_array_rejects_non_figures():
    with pytest.raises(ValueError, match="Figure"):
        figure_to_array(np.zeros((3, 3)))
