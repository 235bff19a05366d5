"""The exportable test-time graph: network, flip test, aggregation, projection, heatmap NMS and top-k.

:class:`DecodeGraph` wraps a network (``x (1, 3, H, W) -> [outputs per stride]``) with everything of the official
HigherHRNet test-time pipeline that maps onto graph ops, so that ONNX Runtime / OpenVINO run it in one call:

1. the network on the image and on its mirror, as one batch of 2 (flip test; official ``tools/valid.py``);
2. ``bottomup.engine.inference.aggregate_outputs``, the very function the torch path runs: stages averaged, the
   mirrored pass flipped back and its channels permuted by ``flip_index``, heatmaps of both averaged, tags
   concatenated (L = 2 D); then heatmaps and tags projected (bilinear) to the input size, each on its own so that
   the results are the outputs themselves (the torch path projects them as one tensor: the same values);
3. NMS by max-pool (official ``HeatmapParser.nms``: a pixel survives where it equals its ``nms_kernel`` window's
   maximum) and ``top-k`` (``k = max_people``) per joint, with the tags gathered at the candidates.

Matching, adjustment and refinement need sequential logic and stay in ``bottomup.codec.grouping``
(``group_candidates``), which takes the graph's outputs as numpy arrays.

With ``udp`` (``test.udp``, exported as the JSON's ``udp``; MMPose 0.x UDP config) step 2 resizes with
``align_corners=True`` and does not project to the input: heatmaps stay at the last output's size, tags are
resized to it (``bottomup.engine.inference.aggregate_scales``' UDP branch), so NMS and top-k run on those maps.

Letters: K keypoints, M = ``max_people`` candidates per joint, L tag dimensions, H x W network input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bottomup.codec.settings import GroupingSettings
from bottomup.engine.inference import aggregate_outputs, run_model, scale_map_channels

__all__ = ["DecodeGraph", "INPUT_NAME", "OUTPUT_NAMES"]

#: Name of the graph's input: ``(1, 3, H, W)`` float32, the ImageNet-normalised network input.
INPUT_NAME = "image"
#: Names of the graph's outputs, in order (see :meth:`DecodeGraph.forward`).
OUTPUT_NAMES = ("heatmaps", "tags", "candidate_values", "candidate_indices", "candidate_tags")


class DecodeGraph(nn.Module):
    """Network + test-time aggregation + NMS + top-k, one image per call (see the module docstring).

    Args:
        model: the network in eval mode, ``x (N, 3, H, W) -> [outputs per stride]``, highest stride first.
        num_keypoints: K.
        flip_index: joint permutation under a horizontal flip; ``None`` turns the flip test off.
        grouping: the decode settings; the graph bakes in ``nms_kernel`` (odd max-pool window of the NMS) and
            ``max_people`` (M, candidates kept per joint), the host applies the rest.
        udp: the UDP aggregation (module docstring); the host then decodes and maps back with UDP too.

    Raises:
        ValueError: ``flip_index`` that is not a permutation of ``range(K)``, or an even / non-positive kernel.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        num_keypoints: int,
        flip_index: Sequence[int] | None,
        grouping: GroupingSettings,
        udp: bool = False,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.udp = bool(udp)
        self.num_keypoints = int(num_keypoints)
        #: leading SWAHR scale-map channels of each output, cut off as at test time (``scale_map_channels``)
        self.scale_channels = scale_map_channels(model)
        self.flip_index = None if flip_index is None else [int(j) for j in flip_index]
        if self.flip_index is not None and sorted(self.flip_index) != list(range(self.num_keypoints)):
            raise ValueError(f"flip_index must be a permutation of range({self.num_keypoints}), got {flip_index}")
        self.nms_kernel = grouping.nms_kernel  # checked by GroupingSettings
        self.max_people = grouping.max_people

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run the test-time graph on one normalised image.

        Args:
            image: ``(1, 3, H, W)`` float32, ImageNet-normalised RGB (``bottomup.data.transforms.normalize_image``),
                ``H`` and ``W`` multiples of the network's input multiple (32).

        Returns:
            ``heatmaps (K, H, W)`` float32 (averaged over stages and flip, input pixels; with ``udp`` ``(K, h, w)``
            at the last output's size, and every map below at that size);
            ``tags (K, L, H, W)`` float32 (``L = 2 D`` with flip test, plain tags first; tag dimension before the
            pixels, as the projection leaves them: the grouping's ``(K, H, W, L)`` is ``np.moveaxis(tags, 1, -1)``,
            a view, where a transpose in the graph would copy the largest output, ~25 ms at 512 x 832);
            ``candidate_values (K, M)`` float32 heatmap values at the NMS peaks, descending per joint (0 where fewer
            than M peaks: NMS zeroes every other pixel);
            ``candidate_indices (K, M)`` int64 row-major pixel index ``y * W + x`` of each candidate;
            ``candidate_tags (K, M, L)`` float32 tags at the candidates.
        """
        k = self.num_keypoints
        if self.flip_index is not None:
            both = run_model(self.model, torch.cat([image, torch.flip(image, [3])], dim=0))
            outs, flips = [o[:1] for o in both], [o[1:] for o in both]
        else:
            outs, flips = run_model(self.model, image), None
        if self.scale_channels:
            outs = [o[:, self.scale_channels :] for o in outs]
            flips = None if flips is None else [o[:, self.scale_channels :] for o in flips]
        height, width = image.shape[-2], image.shape[-1]
        heat, tags = aggregate_outputs(
            outs, flips, num_keypoints=k, flip_index=self.flip_index, tags_last=False, align_corners=self.udp
        )
        # The projection (aggregate_outputs' project_size) done here, heatmaps and tags apart, each straight into its
        # output's shape: slicing one projected tensor, a reshape or an index at an output copy full-size maps in a
        # graph (~40 ms at 512 x 832 on ONNX Runtime), where in torch they are views.
        tag_dim = tags.shape[2]
        if self.udp:  # no projection: the heatmaps' own size (the last output), tags resized to it
            size = (heat.shape[-2], heat.shape[-1])
        else:
            size = (height, width)
            heat = F.interpolate(heat, size=size, mode="bilinear", align_corners=False)  # (1, K, H, W)
        tags = F.interpolate(tags.reshape(tags.shape[1:]), size=size, mode="bilinear", align_corners=self.udp)
        pad = (self.nms_kernel - 1) // 2
        pooled = F.max_pool2d(heat, self.nms_kernel, 1, pad)
        peaks = heat * (pooled == heat).to(heat.dtype)  # a Where with a zeros tensor was 6x slower
        values, indices = torch.topk(peaks.reshape(k, -1), self.max_people, dim=1)
        flat_tags = tags.reshape(k, tag_dim, -1)  # (K, L, H W)
        cand_tags = torch.gather(flat_tags, 2, indices[:, None, :].expand(-1, tag_dim, -1))  # (K, L, M)
        # (K, H, W): a reshape at an output copies (~3 ms), kept for the plain shape
        return heat.reshape(heat.shape[1:]), tags, values, indices, cand_tags.transpose(1, 2)
