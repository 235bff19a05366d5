"""``notebooks/tag_maps.ipynb`` runs top to bottom (nbclient, headless) and shows its five pictures."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import nbformat
import numpy as np
import pytest
import torch
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "tag_maps.ipynb"
# The code cells that must each show one picture, by the first line of their source.
PICTURE_CELLS = (
    "fig = Figure(",  # 1. the input
    "show(vis.heatmap_grid(",  # 2. heatmaps per joint
    "show(vis.tag_grid(",  # 3. tag maps
    "show(vis.plot_person_tags(",  # 4. tags per person
    "factor = max(",  # 5. grouped skeletons
)


class _ThisInterpreter(KernelSpecManager):
    """Kernel spec ``python3`` = ipykernel on the interpreter running the tests.

    ipykernel's built-in spec (``python -m ipykernel_launcher`` with ``sys.executable``), whatever kernel specs
    are installed (a user-level ``python3`` spec may point at another Python); nothing is written anywhere.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        from ipykernel.kernelspec import RESOURCES, get_kernel_dict

        return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())


def _png_outputs(cell: nbformat.NotebookNode) -> list[np.ndarray]:
    images = []
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if "image/png" in data:
            raw = np.frombuffer(base64.b64decode(data["image/png"]), np.uint8)
            images.append(cv2.imdecode(raw, cv2.IMREAD_COLOR))
    return images


def test_committed_notebook_has_no_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "the notebook has no code cells"
    for i, cell in enumerate(code):
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"code cell {i} is not stripped"


@pytest.mark.slow
def test_notebook_runs_and_shows_the_five_pictures(
    quickstart_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTTOMUP_CHECKPOINT", str(quickstart_checkpoint))
    monkeypatch.delenv("BOTTOMUP_IMAGE", raising=False)
    monkeypatch.delenv("BOTTOMUP_EXPERIMENT", raising=False)
    monkeypatch.setenv("MPLBACKEND", "agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=_ThisInterpreter())
    client = NotebookClient(
        nb, km=km, timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}}, allow_errors=False
    )
    client.execute()  # raises CellExecutionError naming the cell when any cell fails
    executed = tmp_path / "tag_maps.ipynb"
    nbformat.write(nb, executed)

    nb = nbformat.read(executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    setup_text = "".join(o.get("text", "") for o in code[0].outputs if o.output_type == "stream")
    assert f"checkpoint (BOTTOMUP_CHECKPOINT): {quickstart_checkpoint}" in setup_text
    # the default image: the synthetic val image with the most labeled people (several, for tags to separate)
    import json

    from omegaconf import OmegaConf

    data = OmegaConf.create(torch.load(quickstart_checkpoint, weights_only=True)["config"]).data
    shown = next(line.split("image: ", 1)[1] for line in setup_text.splitlines() if line.startswith("image: "))
    ann = json.loads(Path(data.val_ann).read_text())
    image_id = next(im["id"] for im in ann["images"] if Path(shown).name == im["file_name"])
    people = [a for a in ann["annotations"] if a["image_id"] == image_id and a.get("num_keypoints", 0) > 0]
    assert Path(shown).parent == Path(data.val_images) and len(people) >= 3, (shown, len(people))

    pictures = {}
    for prefix in PICTURE_CELLS:
        cells = [c for c in code if c.source.lstrip().startswith(prefix)]
        assert len(cells) == 1, f"expected one code cell starting with {prefix!r}, found {len(cells)}"
        images = _png_outputs(cells[0])
        assert len(images) == 1, f"cell {prefix!r} shows {len(images)} PNG pictures, expected 1"
        pictures[prefix] = images[0]
    assert sum(len(_png_outputs(c)) for c in code) >= 5
    for prefix, img in pictures.items():
        assert img is not None and img.ndim == 3 and min(img.shape[:2]) >= 100, (
            prefix,
            None if img is None else img.shape,
        )
        assert img.std() > 5, f"picture of {prefix!r} is (nearly) blank"
    # Each picture cell is preceded by a markdown cell explaining it.
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(cell.source.lstrip().startswith(p) for p in PICTURE_CELLS):
            assert nb.cells[i - 1].cell_type == "markdown" and "##" in nb.cells[i - 1].source
