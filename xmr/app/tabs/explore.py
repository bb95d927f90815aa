"""The Explore tab: the PCA map of the shared space, with the visitor's current query on it."""

from __future__ import annotations

import gradio as gr

from xmr.app.explore import Explorer
from xmr.app.service import EncodedQuery
from xmr.app.tabs.common import gr_errors

__all__ = ["ExploreTab"]


class ExploreTab:
    """Layout, callback and wiring of the Explore tab.

    Args:
        explorer: the map workflow (one PCA basis shared by every visitor).
        query_state: this visitor's current query (written by the Search tab).
    """

    def __init__(self, explorer: Explorer, query_state: gr.State):
        self.explorer = explorer
        self.query_state = query_state

    def build(self, tab: gr.Tab) -> None:
        """Lay the tab out in ``tab`` (the current ``gr.Tab``) and wire its events; the map is drawn
        when the tab is opened and whenever a control changes."""
        with gr.Row():
            dims = gr.Radio(["2-D", "3-D"], value="2-D", label="map", elem_id="map-dims")
            color_by = gr.Dropdown(self.explorer.color_columns(), value="modality", label="colour by",
                                   elem_id="map-color")
            max_points = gr.Slider(100, 5000, value=1500, step=100, label="points per modality",
                                   elem_id="map-points")
            show_query = gr.Checkbox(True, label="draw the current query", elem_id="map-query")
            draw_btn = gr.Button("Draw", elem_id="map-draw")
        map_plot = gr.Plot(elem_id="pca-plot", label="PCA of the shared space")
        map_md = gr.Markdown(elem_id="map-info")

        inputs = [dims, color_by, max_points, show_query, self.query_state]
        outputs = [map_plot, map_md]
        draw_btn.click(self.draw_map, inputs, outputs, api_name="explore")
        tab.select(self.draw_map, inputs, outputs, api_name="explore_tab", api_visibility="undocumented")
        for control in (dims, color_by):
            control.change(self.draw_map, inputs, outputs, api_name=f"explore_{control.elem_id}",
                           api_visibility="undocumented")
        max_points.release(self.draw_map, inputs, outputs, api_name="explore_points",
                           api_visibility="undocumented")

    @gr_errors
    def draw_map(self, dims, color_by, max_points, show_query, state):
        query = None
        if show_query and state and state.get("query"):
            query = EncodedQuery.from_dict(state["query"])
        d = 3 if str(dims).startswith("3") else 2
        fig = self.explorer.map_figure(dims=d, color_by=color_by, max_points=int(max_points), query=query)
        basis = self.explorer.pca()
        indexed = ", ".join(self.explorer.service.targets())
        text = (f"PCA fitted on {basis.n_fit} indexed vectors of {indexed}; explained "
                f"variance: {basis.describe()}.")
        if query is not None:
            text += " The black star is your current query, projected with the same basis."
        elif show_query:
            text += " Run a search to see your query in the map."
        return fig, text
