"""A synthetic multi-person keypoint data set in the COCO 2017 layout, for a CPU quickstart.

A newcomer without COCO or a GPU can train and evaluate the whole pipeline on it in minutes: point the normal
COCO data config at it (``data=coco data.root=<root>``). Everything is deterministic from a seed.

Layout written (the official COCO 2017 person-keypoints layout)::

    <root>/annotations/person_keypoints_train2017.json
    <root>/annotations/person_keypoints_val2017.json
    <root>/train2017/<12-digit image id>.jpg
    <root>/val2017/<12-digit image id>.jpg
    <root>/synthetic.json          marker: generator version + parameters (written last)

Annotations follow the COCO keypoint format (https://cocodataset.org/#format-data, "Keypoint Detection"):
one category ``person`` (id 1) with the 17 COCO keypoint names in the order of ``conf/data/coco.yaml`` and the
1-based COCO ``skeleton``; per person ``keypoints`` (flat ``[x1, y1, v1, ..., x17, y17, v17]``), ``num_keypoints``
(count of ``v > 0``), ``bbox`` ``[x, y, w, h]``, ``area``, ``segmentation`` (polygons), ``iscrowd``. Frame: original
image pixels with the COCO/HigherHRNet convention that pixel ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)``, so a
joint at ``(x, y)`` lies in pixel ``(int(x), int(y))``. Visibility: ``v = 2`` visible, ``v = 1`` labeled but
hidden (covered by a figure drawn later, or an ear turned away from the viewer), ``v = 0`` outside the image or
unlabeled, with ``x = y = 0``.

What the images look like: a smooth, noisy, coloured background with a few flat distractor shapes, and 1 to
``max_people`` stick-figure "people" drawn front-facing (the person's left side is on the image right, as for
a person facing the camera, so left/right is learnable and consistent with horizontal-flip augmentation).
Each figure has its own shirt/trouser/skin/hair colours: a filled torso, thick limbs, a round head with hair on
top, dark dots at the limb joints and eyes/nose/ears marked on the face. Poses come from a small kinematic
model (torso lean, shoulder/elbow/hip/knee angles, head tilt and turn), with random global scale and rotation; figures are often placed next to an earlier one so that they overlap, and later figures
occlude earlier ones. As in real COCO, some images hold a crowd region (``iscrowd = 1``, an uncompressed RLE
over a patch of many small overlapping figures, no keypoints) and some people carry no keypoints
(``iscrowd = 0``, ``num_keypoints = 0``, all-zero keypoints, with a segmentation): every small background
figure (30 %, 12-30 % of the image height; COCO labels few people that small) and 6 % of the others. Labeled
people are 35-90 % of the image height. Training
code masks both out of the loss.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    "COCO_KEYPOINT_NAMES",
    "COCO_SKELETON",
    "GENERATOR_VERSION",
    "SyntheticImage",
    "default_cache_root",
    "ensure_synthetic_coco",
    "generate_synthetic_coco",
    "render_synthetic_image",
    "synthetic_image",
]

#: Bumped whenever the images or annotations produced for given parameters change (invalidates caches).
GENERATOR_VERSION = 4

#: The 17 COCO keypoints, in the channel order of ``conf/data/coco.yaml``.
COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
#: COCO person skeleton, 1-based keypoint indices (as in the official ``person_keypoints_*.json``).
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14),
    (14, 12),
    (17, 15),
    (15, 13),
    (12, 13),
    (6, 12),
    (7, 13),
    (6, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (9, 11),
    (2, 3),
    (1, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
    (5, 7),
)

(
    NOSE,
    L_EYE,
    R_EYE,
    L_EAR,
    R_EAR,
    L_SHO,
    R_SHO,
    L_ELB,
    R_ELB,
    L_WRI,
    R_WRI,
    L_HIP,
    R_HIP,
    L_KNE,
    R_KNE,
    L_ANK,
    R_ANK,
) = range(17)
K = len(COCO_KEYPOINT_NAMES)

MARKER = "synthetic.json"
JPEG_QUALITY = 92
SPLITS = ("train2017", "val2017")
CROWD_OWNER_BASE = 200  # owner-map value of crowd patches (people use 1..max_people)
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


# ---------------------------------------------------------------------------------------------------- pose model
@dataclass
class _Figure:
    """One drawn figure: COCO-frame joint positions and what is needed to draw it."""

    joints: np.ndarray  # (17, 2) float64, original-image pixels (COCO frame)
    neck: np.ndarray  # (2,)
    head_center: np.ndarray  # (2,)
    head_radius: float
    head_angle: float  # radians, rotation of the head frame (0 = upright)
    hidden: np.ndarray  # (17,) bool: self-hidden joints (ear turned away), labeled v=1, not drawn
    arm_width: int
    leg_width: int
    colors: dict[str, tuple[int, int, int]] = field(default_factory=dict)


def _rot(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


_SKIN = np.array([[60, 80, 120], [90, 130, 190], [120, 170, 225], [140, 190, 240], [45, 60, 95]], np.float64)


def _random_color(rng: np.random.Generator, min_sat: int = 90, min_val: int = 70) -> tuple[int, int, int]:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(min_sat, 256), rng.integers(min_val, 256)]]], np.uint8)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(c) for c in bgr)


def _sample_figure(rng: np.random.Generator, height: float, pelvis: np.ndarray, rotation: float) -> _Figure:
    """Sample a front-facing pose and place it.

    Local frame: unit body height, origin at the pelvis, x to the image right (the person's left side), y down.
    The pose is then scaled by ``height`` pixels, rotated by ``rotation`` radians about the pelvis and moved to
    ``pelvis`` (COCO-frame pixels).
    """
    p = rng.uniform(0.9, 1.1, size=8)  # proportion jitter
    torso, neck_len, head_r = 0.29 * p[0], 0.1 * p[1], 0.068 * p[2]
    sho_half, hip_half = 0.1 * p[3] * rng.uniform(0.75, 1.05), 0.06 * p[4]
    upper_arm, forearm = 0.16 * p[5], 0.14 * p[5]
    thigh, shin = 0.24 * p[6], 0.23 * p[6]

    lean = rng.normal(0.0, 0.12)  # torso lean about the pelvis
    up = _rot(lean) @ np.array([0.0, -1.0])
    right = _rot(lean) @ np.array([1.0, 0.0])  # image right = the person's left
    neck = up * torso
    pts = np.zeros((K, 2))
    pts[L_SHO] = neck + right * sho_half
    pts[R_SHO] = neck - right * sho_half
    pts[L_HIP] = np.array([hip_half, 0.0])
    pts[R_HIP] = np.array([-hip_half, 0.0])

    def limb_dir(angle: float, side: float, frame_lean: float) -> np.ndarray:
        # angle 0 = pointing down along the body, pi/2 = straight out to the figure's side
        return _rot(frame_lean) @ np.array([side * np.sin(angle), np.cos(angle)])

    for sho, elb, wri, side in ((L_SHO, L_ELB, L_WRI, 1.0), (R_SHO, R_ELB, R_WRI, -1.0)):
        a_up = rng.uniform(-0.35, 2.9)
        a_fore = a_up + rng.choice((-1.0, 1.0)) * rng.uniform(0.0, 2.2)
        pts[elb] = pts[sho] + upper_arm * limb_dir(a_up, side, lean)
        pts[wri] = pts[elb] + forearm * limb_dir(a_fore, side, lean)
    stride = rng.random() < 0.25
    for hip, kne, ank, side in ((L_HIP, L_KNE, L_ANK, 1.0), (R_HIP, R_KNE, R_ANK, -1.0)):
        a_thigh = rng.uniform(-0.8, 1.1) if stride else rng.uniform(-0.2, 0.45)
        a_shin = a_thigh + rng.uniform(-0.9, 0.9) * (1.0 if stride else 0.4)
        pts[kne] = pts[hip] + thigh * limb_dir(a_thigh, side, 0.0)
        pts[ank] = pts[kne] + shin * limb_dir(a_shin, side, 0.0)

    head_angle = lean + rng.normal(0.0, 0.2)
    head_center = neck + _rot(head_angle) @ np.array([0.0, -neck_len])
    yaw = float(np.clip(rng.normal(0.0, 0.35), -0.8, 0.8))  # > 0: face turned to the image right
    face = np.array(  # head frame, units of the head radius
        [
            [0.65 * yaw, 0.22],  # nose
            [0.38 + 0.45 * yaw, -0.08],  # left eye (image right)
            [-0.38 + 0.45 * yaw, -0.08],  # right eye
            [0.88 + 0.08 * yaw, 0.08],  # left ear
            [-0.88 + 0.08 * yaw, 0.08],  # right ear
        ]
    )
    pts[:5] = head_center + (face * head_r) @ _rot(head_angle).T
    hidden = np.zeros(K, bool)
    hidden[R_EAR] = yaw > 0.45
    hidden[L_EAR] = yaw < -0.45

    transform = _rot(rotation) * height
    to_image = lambda q: q @ transform.T + pelvis  # noqa: E731
    return _Figure(
        joints=to_image(pts),
        neck=to_image(neck),
        head_center=to_image(head_center),
        head_radius=head_r * height,
        head_angle=head_angle + rotation,
        hidden=hidden,
        arm_width=max(2, int(round(0.07 * height))),
        leg_width=max(2, int(round(0.08 * height))),
        colors={
            "shirt": _random_color(rng),
            "trousers": _random_color(rng, 40, 40),
            "skin": tuple(int(c) for c in np.clip(_SKIN[rng.integers(len(_SKIN))] + rng.normal(0, 12, 3), 0, 255)),
            "hair": _random_color(rng, 0, 0) if rng.random() < 0.3 else tuple(int(c) for c in rng.integers(0, 70, 3)),
        },
    )


# ---------------------------------------------------------------------------------------------------- drawing
def _fixed(pts: np.ndarray) -> list[tuple[int, int]]:
    """COCO-frame points ``(..., 2)`` -> cv2 fixed-point tuples (cv2 puts pixel centres at integers)."""
    q = np.round((np.asarray(pts, np.float64).reshape(-1, 2) - 0.5) * _ONE).astype(np.int64)
    return [(int(x), int(y)) for x, y in q.tolist()]


class _Painter:
    """Draws every primitive into the image (anti-aliased colour) and the owner map (figure id).

    Points are cv2 fixed-point tuples from :func:`_fixed`; radii are in pixels.
    """

    def __init__(self, image: np.ndarray, owner: np.ndarray) -> None:
        self.image, self.owner = image, owner

    def line(self, a, b, color, width: int, oid: int) -> None:
        self.image = cv2.line(self.image, a, b, color, width, cv2.LINE_AA, _SHIFT)
        self.owner = cv2.line(self.owner, a, b, oid, width, cv2.LINE_8, _SHIFT)

    def circle(self, c, radius: float, color, oid: int) -> None:
        r = max(1, int(radius * _ONE + 0.5))
        self.image = cv2.circle(self.image, c, r, color, -1, cv2.LINE_AA, _SHIFT)
        self.owner = cv2.circle(self.owner, c, r, oid, -1, cv2.LINE_8, _SHIFT)

    def poly(self, pts: list[tuple[int, int]], color, oid: int) -> None:
        p = np.array(pts, np.int32).reshape(-1, 1, 2)
        self.image = cv2.fillPoly(self.image, [p], color, cv2.LINE_AA, _SHIFT)
        self.owner = cv2.fillPoly(self.owner, [p], oid, cv2.LINE_8, _SHIFT)


def _shade(color, f: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * f)) for c in color)


_HAIR_ARC = np.deg2rad(np.linspace(195, 345, 9))
_HAIR_ARC = np.stack([np.cos(_HAIR_ARC), np.sin(_HAIR_ARC)], 1) * 1.04


def _draw_figure(paint: _Painter, fig: _Figure, oid: int) -> None:
    col, r = fig.colors, fig.head_radius
    hair = fig.head_center + (_HAIR_ARC * r) @ _rot(fig.head_angle).T
    pts = _fixed(np.concatenate([fig.joints, fig.neck[None], fig.head_center[None], hair]))
    j, neck, head = pts[:K], pts[K], pts[K + 1]
    # legs (behind the torso), torso, neck, head, arms (in front), joint marks
    for a, b in ((L_HIP, L_KNE), (L_KNE, L_ANK), (R_HIP, R_KNE), (R_KNE, R_ANK)):
        paint.line(j[a], j[b], col["trousers"], fig.leg_width, oid)
    paint.poly([j[L_SHO], j[R_SHO], j[R_HIP], j[L_HIP]], col["shirt"], oid)
    paint.line(j[L_SHO], j[R_SHO], col["shirt"], fig.arm_width, oid)
    paint.line(j[L_HIP], j[R_HIP], col["trousers"], fig.leg_width, oid)
    paint.line(neck, head, col["skin"], max(1, int(0.7 * r + 0.5)), oid)
    paint.circle(head, r, col["skin"], oid)
    paint.poly(pts[K + 2 :], col["hair"], oid)
    for a, b, c in (
        (L_SHO, L_ELB, col["shirt"]),
        (R_SHO, R_ELB, col["shirt"]),
        (L_ELB, L_WRI, col["skin"]),
        (R_ELB, R_WRI, col["skin"]),
    ):
        paint.line(j[a], j[b], c, fig.arm_width, oid)
    dot = max(1.0, 0.35 * fig.arm_width)
    upper, lower = _shade(col["shirt"], 0.4), _shade(col["trousers"], 0.4)
    for k in (L_SHO, R_SHO, L_ELB, R_ELB):
        paint.circle(j[k], dot, upper, oid)
    for k in (L_HIP, R_HIP, L_KNE, R_KNE):
        paint.circle(j[k], dot, lower, oid)
    for k in (L_WRI, R_WRI, L_ANK, R_ANK):  # hands and feet: a bit larger, dark
        paint.circle(j[k], 1.5 * dot, (30, 30, 30), oid)
    face_dot = max(0.8, 0.14 * r)
    paint.circle(j[NOSE], face_dot, (40, 40, 170), oid)
    for k in (L_EYE, R_EYE):
        paint.circle(j[k], face_dot, (20, 20, 20), oid)
    ear = _shade(col["skin"], 0.7)
    for k in (L_EAR, R_EAR):
        if not fig.hidden[k]:
            paint.circle(j[k], max(1.0, 0.22 * r), ear, oid)


def _noise(rng: np.random.Generator, amplitude: float, shape: tuple[int, ...]) -> np.ndarray:
    """Pixel noise, int16 uniform in ``[-amplitude, amplitude]`` (cheaper than Gaussian; looks the same)."""
    a = max(1, int(round(amplitude)))
    return rng.integers(-a, a + 1, shape, dtype=np.int16)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random colour field + stripes (sometimes) + pixel noise + a few flat distractor shapes."""
    g = int(rng.integers(2, 7))
    low = rng.uniform(25, 230, (g, g, 3)).astype(np.float32)
    bg = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.35:
        ramp = np.arange(size, dtype=np.float32)
        ang, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
        phase = (ramp[None, :] * np.cos(ang) + ramp[:, None] * np.sin(ang)) * np.float32(2 * np.pi / period)
        bg += (np.float32(rng.uniform(10, 35)) * np.sin(phase))[..., None]
    bg += _noise(rng, rng.uniform(3, 20), (size, size, 3))
    img = np.clip(bg, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 5))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        c = rng.uniform(0, size, 2)
        ax = rng.uniform(0.03, 0.2, 2) * size
        p0, p1, pc = _fixed(np.stack([c - ax, c + ax, c]))
        if rng.random() < 0.5:
            img = cv2.rectangle(img, p0, p1, color, -1, cv2.LINE_AA, _SHIFT)
        else:
            axes = (int(ax[0] * _ONE), int(ax[1] * _ONE))
            img = cv2.ellipse(img, pc, axes, rng.uniform(0, 180), 0, 360, color, -1, cv2.LINE_AA, _SHIFT)
    return img


# ---------------------------------------------------------------------------------------------------- annotations
def _polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer/inner contours of a 0/1 mask as COCO polygons (pixel-corner coordinates, >= 3 points each)."""
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    polys = [(c.reshape(-1, 2) + 0.5).ravel().astype(float).round(2).tolist() for c in contours if len(c) >= 3]
    if not polys:  # slivers of 1-2 pixels: their bounding rectangle
        x, y, w, h = cv2.boundingRect(mask)
        polys = [[float(x), float(y), float(x + w), float(y), float(x + w), float(y + h), float(x), float(y + h)]]
    return polys


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (column-major run lengths, starting with a run of zeros) of a 0/1 mask."""
    flat = mask.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _box(mask: np.ndarray, points: np.ndarray | None = None) -> list[float]:
    """Tight ``[x, y, w, h]`` around the mask's pixels (and ``points``, COCO frame) in COCO pixel-corner units."""
    x, y, w, h = cv2.boundingRect(mask)
    x0, y0, x1, y1 = float(x), float(y), float(x + w), float(y + h)
    if points is not None and len(points):
        x0, y0 = min(x0, float(points[:, 0].min())), min(y0, float(points[:, 1].min()))
        x1, y1 = max(x1, float(points[:, 0].max())), max(y1, float(points[:, 1].max()))
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


@dataclass
class SyntheticImage:
    """One rendered image with its ground truth.

    Attributes:
        image: ``(S, S, 3)`` uint8 BGR, as written to the JPEG (before compression).
        background: ``(S, S, 3)`` uint8 BGR, the same image without any figure.
        owner: ``(S, S)`` uint8, which figure each pixel shows: 0 background, ``i`` for ``owners[a] == i``,
            ``CROWD_OWNER_BASE + c`` for crowd patch ``c``.
        annotations: COCO annotation records (without ``id`` / ``image_id``) in original-image pixels.
        owners: owner-map value of each annotation (parallel to ``annotations``).
    """

    image: np.ndarray
    background: np.ndarray
    owner: np.ndarray
    annotations: list[dict]
    owners: list[int]


def render_synthetic_image(rng: np.random.Generator, image_size: int = 256, max_people: int = 5) -> SyntheticImage:
    """Draw one image: background, maybe a crowd patch, 1..``max_people`` figures; annotate them (COCO format).

    Args:
        rng: the random source (all randomness of the image comes from it).
        image_size: side S of the square image, pixels.
        max_people: most individual (non-crowd) figures.

    Returns:
        :class:`SyntheticImage`; ``annotations`` holds labeled people, unlabeled people (``num_keypoints = 0``)
        and crowd regions (``iscrowd = 1``, uncompressed RLE); figures left with no visible pixel are dropped.
    """
    s = int(image_size)
    background = _background(rng, s)
    paint = _Painter(background.copy(), np.zeros((s, s), np.uint8))

    crowds = []
    if rng.random() < 0.3:  # crowd patch first, so that people stand in front of it
        oid = CROWD_OWNER_BASE + len(crowds)
        center = rng.uniform(0.2, 0.8, 2) * s
        half = rng.uniform(0.1, 0.22, 2) * s
        for _ in range(int(rng.integers(5, 13))):
            h = rng.uniform(0.07, 0.18) * s
            pos = center + rng.uniform(-1, 1, 2) * half
            _draw_figure(paint, _sample_figure(rng, h, pos, rng.normal(0, 0.15)), oid)
        crowds.append(oid)

    figures, labeled = [], []
    for i in range(int(rng.integers(1, max_people + 1))):
        small = rng.random() < 0.3  # background people: small and unlabeled, as in COCO
        h = rng.uniform(0.12, 0.3) * s if small else rng.uniform(0.35, 0.9) * s
        if figures and rng.random() < 0.5:  # next to an earlier figure: overlap
            prev = figures[int(rng.integers(len(figures)))]
            ref = max(h, float(np.ptp(prev.joints[:, 1])))
            # side by side, limbs and torso edges overlapping (not one figure right on top of the other)
            offset = np.array([rng.choice((-1.0, 1.0)) * rng.uniform(0.18, 0.45), rng.uniform(-0.15, 0.15)])
            pelvis = prev.joints[[L_HIP, R_HIP]].mean(0) + offset * ref
        else:
            pelvis = np.array([rng.uniform(0.05, 0.95) * s, rng.uniform(0.25, 0.85) * s])
        rotation = rng.normal(0, 0.15) if rng.random() < 0.85 else rng.uniform(-1.3, 1.3)
        fig = _sample_figure(rng, h, pelvis, rotation)
        _draw_figure(paint, fig, i + 1)
        figures.append(fig)
        labeled.append(not small and rng.random() >= 0.06)

    image = paint.image
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    image = np.clip(image + _noise(rng, rng.uniform(2, 8), image.shape), 0, 255).astype(np.uint8)
    owner = paint.owner

    anns, owners = [], []
    for oid in crowds:
        m = (owner == oid).astype(np.uint8)
        if not m.any():
            continue
        anns.append(
            {
                "segmentation": _uncompressed_rle(m),
                "num_keypoints": 0,
                "area": float(m.sum()),
                "iscrowd": 1,
                "keypoints": [0] * (3 * K),
                "bbox": _box(m),
                "category_id": 1,
            }
        )
        owners.append(oid)
    for i, (fig, is_labeled) in enumerate(zip(figures, labeled, strict=True)):
        oid = i + 1
        m = (owner == oid).astype(np.uint8)
        if not m.any():  # completely covered by later figures
            continue
        kps = np.zeros((K, 3))
        if is_labeled:
            xy = fig.joints.round(2)  # as written to the json: visibility must hold for the stored values
            inside = (xy[:, 0] >= 0) & (xy[:, 0] < s) & (xy[:, 1] >= 0) & (xy[:, 1] < s)
            xi = np.clip(xy[:, 0].astype(int), 0, s - 1)
            yi = np.clip(xy[:, 1].astype(int), 0, s - 1)
            shown = (owner[yi, xi] == oid) & ~fig.hidden
            kps[:, :2] = np.where(inside[:, None], xy, 0.0) + 0.0  # no -0.0
            kps[:, 2] = np.where(inside, np.where(shown, 2, 1), 0)
        polys = _polygons(m)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, s, s))
        labeled_xy = kps[kps[:, 2] > 0, :2]
        anns.append(
            {
                "segmentation": polys,
                "num_keypoints": int((kps[:, 2] > 0).sum()),
                "area": float(mask_utils.area(rle)),
                "iscrowd": 0,
                "keypoints": [float(v) if c < 2 else int(v) for row in kps for c, v in enumerate(row)],
                "bbox": _box(m, labeled_xy),
                "category_id": 1,
            }
        )
        owners.append(oid)
    return SyntheticImage(image=image, background=background, owner=owner, annotations=anns, owners=owners)


def synthetic_image(seed: int, split: str, index: int, image_size: int = 256, max_people: int = 5) -> SyntheticImage:
    """Image ``index`` of ``split`` (``"train2017"`` / ``"val2017"``) of the set made with ``seed``.

    Each image has its own random stream (seeded by ``(seed, split, index)``), so any image can be re-rendered
    alone, e.g. to inspect its owner map or background; :func:`generate_synthetic_coco` writes exactly this.

    Raises:
        ValueError: unknown split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng([int(seed), SPLITS.index(split), int(index)])
    return render_synthetic_image(rng, image_size, max_people)


# ---------------------------------------------------------------------------------------------------- data set
def _params(num_train: int, num_val: int, image_size: int, seed: int, max_people: int) -> dict:
    params = {
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": int(image_size),
        "seed": int(seed),
        "max_people": int(max_people),
    }
    if params["num_train"] < 1 or params["num_val"] < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train} and {num_val}")
    if not 64 <= params["image_size"] <= 4096:
        raise ValueError(f"image_size must be in [64, 4096] pixels, got {image_size}")
    if not 1 <= params["max_people"] <= 30:
        raise ValueError(f"max_people must be in [1, 30], got {max_people}")
    return params


def _marker_content(params: dict) -> dict:
    return {"generator": "bottomup.data.synthetic", "version": GENERATOR_VERSION, "params": params}


def _read_marker(root: Path) -> dict | None:
    try:
        with open(root / MARKER, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_split(folder: Path, split: str, params: dict) -> None:
    n = params["num_train"] if split == "train2017" else params["num_val"]
    first_id = 1 if split == "train2017" else params["num_train"] + 1  # image ids disjoint across splits
    (folder / split).mkdir(parents=True)
    images, annotations = [], []
    for i in range(n):
        image_id = first_id + i
        rendered = synthetic_image(params["seed"], split, i, params["image_size"], params["max_people"])
        name = f"{image_id:012d}.jpg"
        ok, buf = cv2.imencode(".jpg", rendered.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode synthetic image {name} as JPEG")
        (folder / split / name).write_bytes(buf.tobytes())
        size = params["image_size"]
        images.append({"license": 1, "file_name": name, "height": size, "width": size, "id": image_id})
        for j, ann in enumerate(rendered.annotations):  # < 100 per image (max_people <= 30, one crowd)
            annotations.append({**ann, "image_id": image_id, "id": image_id * 100 + j})
    data = {
        "info": {
            "description": "bottomup synthetic multi-person keypoints (COCO 2017 layout)",
            "version": str(GENERATOR_VERSION),
            "year": 2024,
            "contributor": "bottomup.data.synthetic",
            "params": params,
        },
        "licenses": [
            {"id": 1, "name": "CC0 1.0 (synthetic)", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}
        ],
        "images": images,
        "annotations": annotations,
        "categories": [
            {
                "supercategory": "person",
                "id": 1,
                "name": "person",
                "keypoints": list(COCO_KEYPOINT_NAMES),
                "skeleton": [list(p) for p in COCO_SKELETON],
            }
        ],
    }
    with open(folder / "annotations" / f"person_keypoints_{split}.json", "w", encoding="utf-8") as f:
        json.dump(data, f)


def generate_synthetic_coco(
    root: str | os.PathLike,
    *,
    num_train: int = 400,
    num_val: int = 50,
    image_size: int = 256,
    seed: int = 0,
    max_people: int = 5,
) -> Path:
    """Write a synthetic data set in the COCO 2017 person-keypoints layout into ``root`` (see module doc).

    The set is built in a temporary sibling folder and renamed to ``root`` at the end, so ``root`` is either
    absent or complete (a killed run leaves at most a ``.root.tmp-*`` folder next to it). An existing ``root``
    that an earlier call generated (it holds ``synthetic.json``) or an empty folder is replaced; if another
    process finishes the same set first, its copy is kept. Images are deterministic: the same parameters give
    byte-identical json and JPEG files.

    Args:
        root: destination folder (``data.root`` of the COCO data config).
        num_train: images in ``train2017``; image ids ``1..num_train``.
        num_val: images in ``val2017``; image ids ``num_train + 1 ..``.
        image_size: side of the square images, pixels (64..4096).
        seed: random seed.
        max_people: most individual figures per image (1..30); crowd patches come on top.

    Returns:
        ``root`` as an absolute Path.

    Raises:
        ValueError: a parameter out of range.
        FileExistsError: ``root`` exists, is not empty and was not written by this generator.
        PermissionError / OSError: ``root`` (or its parent) cannot be created or written; the message names it.
    """
    params = _params(num_train, num_val, image_size, seed, max_people)
    root = Path(root).expanduser().absolute()
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and _read_marker(root) is None)):
        raise FileExistsError(
            f"{root} exists and was not written by bottomup.data.synthetic (no {MARKER}); refusing to overwrite it. "
            "Pass another root, or remove it yourself."
        )
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    except OSError as e:
        raise type(e)(
            e.errno,
            f"cannot write the synthetic data set to {root} ({e.strerror}); pass a writable root "
            "(or set BOTTOMUP_CACHE to a writable folder)",
        ) from e
    try:
        (tmp / "annotations").mkdir()
        for split in SPLITS:
            _write_split(tmp, split, params)
        with open(tmp / MARKER, "w", encoding="utf-8") as f:
            json.dump(_marker_content(params), f, indent=2)
        if _read_marker(root) == _marker_content(params):  # a concurrent process finished the same set first
            shutil.rmtree(tmp, ignore_errors=True)
            return root
        if root.exists():  # our own older set or an empty folder: swap it out
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            os.replace(root, old / "set")
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, root)
        except OSError:
            if _read_marker(root) == _marker_content(params):  # a concurrent process won the race
                shutil.rmtree(tmp, ignore_errors=True)
                return root
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def default_cache_root(**params) -> Path:
    """``$BOTTOMUP_CACHE/synthetic-<hash>`` (else ``~/.cache/bottomup/synthetic-<hash>``) for these parameters.

    The hash covers the generator version and all parameters (defaults of :func:`generate_synthetic_coco`
    filled in), so each parameter set has its own folder.
    """
    full = _params(**{**_DEFAULTS, **params})
    digest = hashlib.sha1(json.dumps(_marker_content(full), sort_keys=True).encode()).hexdigest()[:10]
    base = Path(os.environ.get("BOTTOMUP_CACHE") or Path.home() / ".cache" / "bottomup")
    return base.expanduser() / f"synthetic-{digest}"


_DEFAULTS = {"num_train": 400, "num_val": 50, "image_size": 256, "seed": 0, "max_people": 5}


def ensure_synthetic_coco(root: str | os.PathLike | None = None, **kwargs) -> Path:
    """Return a folder holding the synthetic set for these parameters, generating it only when needed.

    Generates when ``root`` is absent, or holds a set made with other parameters or another generator version
    (its ``synthetic.json`` differs); otherwise returns at once without touching any file.

    Args:
        root: destination; ``None`` = :func:`default_cache_root` of the parameters.
        **kwargs: ``num_train``, ``num_val``, ``image_size``, ``seed``, ``max_people`` (see
            :func:`generate_synthetic_coco`).

    Returns:
        the absolute root Path.

    Raises:
        TypeError: an unknown keyword. Otherwise as :func:`generate_synthetic_coco`.
    """
    unknown = set(kwargs) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown parameter(s) {sorted(unknown)}; known: {sorted(_DEFAULTS)}")
    params = _params(**{**_DEFAULTS, **kwargs})
    root = default_cache_root(**params) if root is None else Path(root).expanduser().absolute()
    if _read_marker(root) == _marker_content(params):
        return root
    return generate_synthetic_coco(root, **params)


def main(argv: list[str] | None = None) -> int:
    """``python -m bottomup.data.synthetic [--root DIR] [--num-train N] ...``: ensure the set, print its folder."""
    ap = argparse.ArgumentParser(prog="python -m bottomup.data.synthetic", description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=None, help="output folder (default: $BOTTOMUP_CACHE/synthetic-<hash>)")
    ap.add_argument("--num-train", type=int, default=_DEFAULTS["num_train"])
    ap.add_argument("--num-val", type=int, default=_DEFAULTS["num_val"])
    ap.add_argument("--image-size", type=int, default=_DEFAULTS["image_size"])
    ap.add_argument("--seed", type=int, default=_DEFAULTS["seed"])
    ap.add_argument("--max-people", type=int, default=_DEFAULTS["max_people"])
    args = ap.parse_args(argv)
    params = {k: getattr(args, k) for k in _DEFAULTS}
    try:
        root = ensure_synthetic_coco(args.root, **params)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
