() => {
  // Presenter mode scales every plotly plot (fonts and annotations x1.4, margins to match, height x1.25)
  // while body has .pg-presenter, and undoes it when the class goes. Gradio redraws a plot with its
  // original layout whenever its value changes, so a MutationObserver re-applies the scale (debounced);
  // a plot already at the target font size is left alone, so the observer does not loop.
  const FONT_SCALE = 1.4, HEIGHT_SCALE = 1.25, MARGINS = ["t", "l", "b"];
  const scaledLayout = (layout, factor, heightFactor) => {
    const update = {};
    const size = (layout.font && layout.font.size) || 12;
    update["font.size"] = Math.round(size * factor);
    update["hoverlabel.font.size"] = Math.round(size * factor);
    if (layout.height) update.height = Math.round(layout.height * heightFactor);
    MARGINS.forEach((side) => {
      const margin = layout.margin && layout.margin[side];
      if (margin) update[`margin.${side}`] = Math.round(margin * factor);
    });
    (layout.annotations || []).forEach((note, index) => {
      if (note.font && note.font.size) update[`annotations[${index}].font.size`] = Math.round(note.font.size * factor);
    });
    return update;
  };
  const rescale = (plot, on) => {
    const Plotly = window.Plotly;
    if (!Plotly || !plot.layout) return;
    const size = (plot.layout.font && plot.layout.font.size) || 12;
    const scaled = plot.dataset.pgTarget !== undefined && +plot.dataset.pgTarget === size;
    if (on && !scaled) {
      const update = scaledLayout(plot.layout, FONT_SCALE, HEIGHT_SCALE);
      plot.dataset.pgUndo = JSON.stringify(scaledLayout(plot.layout, 1, 1));
      plot.dataset.pgTarget = update["font.size"];
      Plotly.relayout(plot, update);
    } else if (!on && scaled) {
      delete plot.dataset.pgTarget;
      Plotly.relayout(plot, JSON.parse(plot.dataset.pgUndo));
    }
  };
  const applyAll = () => {
    const on = document.body.classList.contains("pg-presenter");
    document.querySelectorAll(".js-plotly-plot").forEach((plot) => rescale(plot, on));
  };
  let timer = null;
  new MutationObserver(() => { clearTimeout(timer); timer = setTimeout(applyAll, 250); })
    .observe(document.body, {childList: true, subtree: true, attributes: true, attributeFilter: ["class"]});
}
