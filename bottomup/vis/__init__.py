"""Pictures: people and maps drawn on images (``draw``), and what the network sees and predicts (``explain``)."""

from bottomup.vis.draw import (
    draw_people,
    figure_to_array,
    heatmap_grid,
    overlay_heatmaps,
    person_colors,
    plot_person_tags,
    render_tag_map,
    tag_grid,
)

__all__ = [
    "draw_people",
    "figure_to_array",
    "heatmap_grid",
    "overlay_heatmaps",
    "person_colors",
    "plot_person_tags",
    "render_tag_map",
    "tag_grid",
]
