"""Evaluation entry point: ``python -m bottomup.evaluate experiment=higherhrnet_w32 checkpoint=PATH data.root=DIR``,
or ``python -m bottomup.evaluate weights=NAME data.root=DIR`` for a published model (``python -m bottomup.zoo``: its
file is downloaded once into the cache and verified; the name brings its experiment and test settings unless given).

Hydra composes ``conf/eval.yaml``; :func:`bottomup.api.evaluate` builds the network from the checkpoint (the
config saved in a ``last.pt`` / ``best.pt`` of this project, or ``experiment``'s model for an official
HigherHRNet ``.pth``), runs the test-time pipeline over the validation set at the checkpoint's input size (unless
``test.input_size=N`` is given), writes ``results_val.json``, ``metrics.json`` and the config that ran into the
Hydra run dir and prints the AP table. Test settings: ``test.*``
(``test.flip_test=false``, ``test.scales=[2,1,0.5]``, ...), ``device=cpu|cuda``, ``max_images=N`` (first N
images only), ``data=crowdpose`` for CrowdPose.

Exit status: 0 done; 2 the checkpoint, data root or model do not fit, or a published model's file cannot be had (the
reason is logged; for a download, the URL, checksum and the path to put the file in by hand).
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from bottomup.api import evaluate
from bottomup.build import CONF_DIR

log = logging.getLogger("bottomup.evaluate")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    """``python -m bottomup.evaluate [experiment=NAME] checkpoint=PATH data.root=DIR [overrides]``."""
    from hydra.core.hydra_config import HydraConfig

    try:
        evaluate(cfg, overrides=list(HydraConfig.get().overrides.task))
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        log.error("%s", e)
        sys.exit(2)


def _with_zoo_overrides(argv: list[str]) -> list[str]:
    """``weights=NAME`` (or ``checkpoint=NAME``) of a published model: its experiment and test settings added to
    the command line unless given (``bottomup.build.zoo_command_overrides``)."""
    from bottomup.build import zoo_command_overrides

    extra = zoo_command_overrides(argv, "weights") or zoo_command_overrides(argv, "checkpoint")
    if extra:  # before Hydra sets up logging: said on stderr
        print(f"pretrained model: {' '.join(extra)} added to the command line", file=sys.stderr)
    return argv + extra


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    sys.argv[1:] = _with_zoo_overrides(sys.argv[1:])
    main()
