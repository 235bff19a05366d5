"""Keypoint layouts: names, flip pairs, skeleton, matching order and OKS sigmas.

Everything that depends on which joints a data set annotates (COCO: 17, CrowdPose: 14) is derived here
from the *named* lists of the data config, so no module hard-codes a number of joints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COCO_OKS_SIGMAS", "DEFAULT_OKS_SIGMA", "KeypointLayout", "flip_index_from_pairs", "flip_pairs_from_names",
    "indices_of", "layout_from_category", "mirror_name", "unpaired_sided_names",
]  # fmt: skip


def indices_of(names: Sequence[str], wanted: Sequence[str], what: str = "keypoint") -> list[int]:
    """Map keypoint names to their indices in ``names``.

    Raises:
        ValueError: a name of ``wanted`` is not in ``names`` (the message lists the known names).
    """
    lookup = {n: i for i, n in enumerate(names)}
    out = []
    for n in wanted:
        if n not in lookup:
            raise ValueError(f"unknown {what} name {n!r}; known names: {list(names)}")
        out.append(lookup[n])
    return out


def flip_index_from_pairs(names: Sequence[str], flip_pairs: Sequence[Sequence[str]]) -> list[int]:
    """Permutation that maps each joint to its mirror image under a horizontal flip.

    ``flip_index[k]`` is the joint whose (flipped) heatmap becomes joint ``k`` after flipping the image; joints
    in no pair (nose, head, neck) map to themselves. The result is an involution
    (``flip_index[flip_index[k]] == k``). Reference: ``FLIP_INDEX`` / ``flip_indices`` of the official
    HigherHRNet and MMPose dataset meta, here derived from named pairs instead of written as numbers.

    Args:
        names: the K keypoint names, in channel order.
        flip_pairs: pairs of names ``[left, right]``.

    Returns:
        list of K ints.

    Raises:
        ValueError: unknown name, a pair of one joint with itself, or a joint in more than one pair.
    """
    index = list(range(len(names)))
    seen: set[int] = set()
    for pair in flip_pairs:
        if len(pair) != 2:
            raise ValueError(f"flip pair {list(pair)} must have exactly two names")
        a, b = indices_of(names, pair, "flip_pairs")
        if a == b or a in seen or b in seen:
            raise ValueError(f"flip pair {list(pair)} repeats a joint; each joint may appear in one pair only")
        seen.update((a, b))
        index[a], index[b] = b, a
    return index


@dataclass(frozen=True)
class KeypointLayout:
    """The joints of a data set, from the named lists in ``conf/data/*.yaml``.

    Args:
        keypoint_names: K names in channel order.
        flip_pairs: ``[left, right]`` name pairs swapped by a horizontal flip.
        skeleton: ``[a, b]`` name pairs drawn as limbs.
        joint_order: names in the order grouping matches joints to people; empty means channel order.
        oks_sigmas: K per-keypoint OKS falloff constants (COCO eval); empty means 0.025 for each joint.
        category_id: the keypoint category's id in the data set's annotation files (COCO: 1); results carry it.

    Raises:
        ValueError: a name that is not a keypoint, or list lengths that do not match K.
    """

    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[str, str], ...] = ()
    skeleton: tuple[tuple[str, str], ...] = ()
    joint_order: tuple[str, ...] = ()
    oks_sigmas: tuple[float, ...] = ()
    category_id: int = 1
    flip_index: tuple[int, ...] = field(init=False)
    skeleton_index: tuple[tuple[int, int], ...] = field(init=False)
    joint_order_index: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(self.keypoint_names)
        if len(set(names)) != len(names):
            raise ValueError(f"keypoint_names has duplicates: {list(names)}")
        object.__setattr__(self, "keypoint_names", names)
        object.__setattr__(self, "flip_pairs", tuple(tuple(p) for p in self.flip_pairs))
        object.__setattr__(self, "skeleton", tuple(tuple(p) for p in self.skeleton))
        object.__setattr__(self, "flip_index", tuple(flip_index_from_pairs(names, self.flip_pairs)))
        object.__setattr__(
            self,
            "skeleton_index",
            tuple(tuple(indices_of(names, limb, "skeleton")) for limb in self.skeleton),
        )
        order = tuple(self.joint_order) or names
        order_index = tuple(indices_of(names, order, "joint_order"))
        if sorted(order_index) != list(range(len(names))):
            raise ValueError(f"joint_order must list every keypoint exactly once, got {list(order)}")
        object.__setattr__(self, "joint_order_index", order_index)
        sigmas = tuple(float(s) for s in self.oks_sigmas) or (0.025,) * len(names)
        if len(sigmas) != len(names):
            raise ValueError(f"oks_sigmas has {len(sigmas)} values for {len(names)} keypoints")
        object.__setattr__(self, "oks_sigmas", sigmas)

    @classmethod
    def from_config(cls, data: Any) -> KeypointLayout:
        """Layout from a data config (``conf/data/*.yaml`` composed: a mapping or DictConfig with ``keypoint_names``
        and optional ``flip_pairs``, ``skeleton``, ``joint_order``, ``oks_sigmas``, ``category_id``);
        ``bottomup.build.data_layout`` gives the layout of a data config by name.

        Raises:
            ValueError: as the constructor.
        """
        return cls(
            keypoint_names=list(data["keypoint_names"]),
            flip_pairs=[list(p) for p in (data.get("flip_pairs") or [])],
            skeleton=[list(p) for p in (data.get("skeleton") or [])],
            joint_order=list(data.get("joint_order") or []),
            oks_sigmas=list(data.get("oks_sigmas") or []),
            category_id=int(data.get("category_id") or 1),
        )

    @property
    def num_keypoints(self) -> int:
        """K, the number of keypoints."""
        return len(self.keypoint_names)


#: COCO's OKS sigmas by keypoint name (``conf/data/coco.yaml``; Ronchi & Perona 2017), the default for a custom
#: data set's keypoints that carry these names.
COCO_OKS_SIGMAS: dict[str, float] = {
    "nose": 0.026, "left_eye": 0.025, "right_eye": 0.025, "left_ear": 0.035, "right_ear": 0.035,
    "left_shoulder": 0.079, "right_shoulder": 0.079, "left_elbow": 0.072, "right_elbow": 0.072,
    "left_wrist": 0.062, "right_wrist": 0.062, "left_hip": 0.107, "right_hip": 0.107, "left_knee": 0.087,
    "right_knee": 0.087, "left_ankle": 0.089, "right_ankle": 0.089,
}  # fmt: skip
#: OKS sigma for a keypoint name COCO does not have (between COCO's wrist 0.062 and elbow 0.072); stated in the
#: warning ``layout_from_category`` gives, and replaced by setting ``data.oks_sigmas``.
DEFAULT_OKS_SIGMA = 0.07

_SIDES = (("left", "right"), ("l_", "r_"))


def mirror_name(name: str) -> str | None:
    """The name of the keypoint mirrored by a horizontal flip: ``left_*`` <-> ``right_*`` (also ``*_left_*``,
    ``l_*`` <-> ``r_*``, any case); ``None`` for a name without a side (``nose``, ``neck``)."""
    low = name.lower()
    for a, b in _SIDES:
        for x, y in ((a, b), (b, a)):
            i = low.find(x)
            if i >= 0 and (len(x) > 2 or i == 0):
                seg = name[i : i + len(x)]
                y = y.upper() if seg.isupper() else y.title() if seg[0].isupper() else y
                return name[:i] + y + name[i + len(x) :]
    return None


def flip_pairs_from_names(names: Sequence[str]) -> list[list[str]]:
    """``[left, right]`` pairs of ``names`` found by :func:`mirror_name` (each pair once, in name order)."""
    present = set(names)
    pairs: list[list[str]] = []
    seen: set[str] = set()
    for n in names:
        m = mirror_name(n)
        if m is not None and m in present and n not in seen and m != n:
            pairs.append([n, m])
            seen.update((n, m))
    return pairs


def unpaired_sided_names(names: Sequence[str], flip_pairs: Sequence[Sequence[str]]) -> dict[str, str]:
    """Keypoints with a side (``left_*`` / ``right_*``, ``l_*`` / ``r_*``: :func:`mirror_name`) that are in no flip
    pair: a horizontal flip (training augmentation, flip test) mirrors the image but keeps their label, so each ends
    up on the wrong side.

    Returns:
        ``{name: its mirror name}`` in ``names`` order (the mirror may or may not be one of ``names``).
    """
    paired = {str(n) for pair in flip_pairs for n in pair}
    out = {}
    for n in names:
        mirror = mirror_name(n)
        if mirror is not None and mirror != n and n not in paired:
            out[n] = mirror
    return out


def layout_from_category(category: dict, source: str = "<annotations>") -> dict[str, Any]:
    """The named lists of a data config read from a COCO keypoint category (``data=custom``).

    Args:
        category: ``{"keypoints": [K names], "skeleton"?: [[a, b], ...] 1-based indices (COCO), "id", "name"}``.
        source: the annotation file, for messages.

    Returns:
        ``{"keypoint_names", "num_keypoints", "flip_pairs", "skeleton", "joint_order", "oks_sigmas",
        "category_id"}``: flip
        pairs by :func:`flip_pairs_from_names`, the skeleton by name, joints matched in channel order, OKS sigmas
        from :data:`COCO_OKS_SIGMAS` where a name is COCO's, else :data:`DEFAULT_OKS_SIGMA`.

    Raises:
        ValueError: a skeleton index outside ``1..K``, duplicate names (the message names ``source``).
    """
    names = [str(n) for n in category["keypoints"]]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: the keypoint names of category {category.get('name')!r} repeat: {names}")
    skeleton = []
    for limb in category.get("skeleton") or []:
        a, b = (int(i) for i in limb)
        if not (1 <= a <= len(names) and 1 <= b <= len(names)):
            raise ValueError(
                f"{source}: skeleton limb {list(limb)} of category {category.get('name')!r} is outside 1..{len(names)} "
                "(COCO skeletons count keypoints from 1); fix it or set data.skeleton by names"
            )
        skeleton.append([names[a - 1], names[b - 1]])
    return {
        "keypoint_names": names,
        "num_keypoints": len(names),
        "flip_pairs": flip_pairs_from_names(names),
        "skeleton": skeleton,
        "joint_order": list(names),
        "oks_sigmas": [COCO_OKS_SIGMAS.get(n, DEFAULT_OKS_SIGMA) for n in names],
        "category_id": int(category.get("id", 1)),
    }
