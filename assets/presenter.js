() => {
  // Runs once per page (gradio's launch `js`). Five jobs:
  // 1. Presenter mode scales every plotly plot while body has .pg-presenter, and undoes it when the class
  //    goes: fonts, margins and height x1.4 (the plot is zoomed as a whole, so rows keep room for their
  //    labels), and no text under FONT_FLOOR px (trace texts and annotations included). Gradio redraws a plot
  //    with its original layout whenever its value changes, so a MutationObserver re-applies the scale
  //    (once per frame); a plot already at its target font size is left alone, so the observer does not loop.
  // 2. Every plot's PNG button saves a file named after its view (tab and plot label), not "newplot.png".
  // 3. In presenter mode a tab's explanation is folded to its first line; a click (or Enter) unfolds it.
  // 4. Controls whose text is a symbol (the header's ↻) get a name for screen readers and keyboards, and a
  //    "skip to the tabs" link is the first Tab stop.
  // 5. A click on a cell of the Inside tab's head-importance map adds that head ("layer.head") to the heads to
  //    switch off (gradio's Plot has no click event; the heatmap's point index is [layer, head]).
  const SCALE = 1.4, FONT_FLOOR = 18, MARGINS = ["t", "l", "b", "r"];
  const scaledFont = (size, factor) => factor === 1 ? size : Math.max(FONT_FLOOR, Math.round(size * factor));

  const scaledLayout = (layout, factor) => {
    const update = {};
    const base = (layout.font && layout.font.size) || 12;
    update["font.size"] = scaledFont(base, factor);
    update["hoverlabel.font.size"] = scaledFont(base, factor);
    if (layout.height) update.height = Math.round(layout.height * (factor === 1 ? 1 : SCALE));
    MARGINS.forEach((side) => {
      const margin = layout.margin && layout.margin[side];
      if (margin) update[`margin.${side}`] = Math.round(margin * (factor === 1 ? 1 : SCALE));
    });
    if (layout.uniformtext && layout.uniformtext.minsize) {
      update["uniformtext.minsize"] = scaledFont(layout.uniformtext.minsize, factor);
    }
    (layout.annotations || []).forEach((note, index) => {
      if (note.font && note.font.size) update[`annotations[${index}].font.size`] = scaledFont(note.font.size, factor);
    });
    return update;
  };

  // Trace texts with their own size (bar labels, marker texts): one restyle for all of them.
  const scaledTraces = (data, factor) => {
    const sizes = [], indices = [];
    (data || []).forEach((trace, index) => {
      const size = trace.textfont && trace.textfont.size;
      if (typeof size === "number") { sizes.push(scaledFont(size, factor)); indices.push(index); }
    });
    return {sizes, indices};
  };

  const rescale = (plot, on) => {
    const Plotly = window.Plotly;
    if (!Plotly || !plot.layout) return;
    const size = (plot.layout.font && plot.layout.font.size) || 12;
    const scaled = plot.dataset.pgTarget !== undefined && +plot.dataset.pgTarget === size;
    if (on && !scaled) {
      const update = scaledLayout(plot.layout, SCALE);
      const traces = scaledTraces(plot.data, SCALE);
      plot.dataset.pgUndo = JSON.stringify({layout: scaledLayout(plot.layout, 1), traces: scaledTraces(plot.data, 1)});
      plot.dataset.pgTarget = update["font.size"];
      if (traces.indices.length) Plotly.restyle(plot, {"textfont.size": traces.sizes}, traces.indices);
      Plotly.relayout(plot, update);
    } else if (!on && scaled) {
      const undo = JSON.parse(plot.dataset.pgUndo);
      delete plot.dataset.pgTarget;
      if (undo.traces.indices.length) Plotly.restyle(plot, {"textfont.size": undo.traces.sizes}, undo.traces.indices);
      Plotly.relayout(plot, undo.layout);
    }
  };

  const slug = (text) => (text || "").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 60);
  const nameImage = (plot) => {
    if (!plot._context) return;
    const tab = plot.closest("[id^='tab-']");
    const block = plot.closest(".block");
    const label = block && block.querySelector("[data-testid='block-label']");
    const title = plot.layout && plot.layout.title && (plot.layout.title.text || plot.layout.title);
    const name = [tab ? tab.id.slice(4) : "playground", slug(label ? label.textContent : "") ||
                  slug(typeof title === "string" ? title.replace(/<[^>]*>/g, " ") : "") || "plot"].join("-");
    plot._context.toImageButtonOptions = {...(plot._context.toImageButtonOptions || {}), filename: name};
  };

  const foldExplanations = (on) => {
    document.querySelectorAll(".pg-explanation").forEach((block) => {
      if (on && !block.hasAttribute("tabindex")) {
        block.setAttribute("tabindex", "0");
        block.setAttribute("role", "button");
        block.setAttribute("aria-expanded", String(block.classList.contains("pg-open")));
      } else if (!on && block.getAttribute("role") === "button") {
        block.removeAttribute("tabindex");
        block.removeAttribute("role");
        block.removeAttribute("aria-expanded");
      }
    });
  };
  const toggleExplanation = (event) => {
    if (!document.body.classList.contains("pg-presenter")) return;
    const block = event.target.closest && event.target.closest(".pg-explanation");
    if (!block || (event.type === "keydown" && event.key !== "Enter" && event.key !== " ")) return;
    if (event.target.closest("a")) return;
    if (event.type === "keydown") event.preventDefault();
    block.classList.toggle("pg-open");
    block.setAttribute("aria-expanded", String(block.classList.contains("pg-open")));
  };
  document.addEventListener("click", toggleExplanation);
  document.addEventListener("keydown", toggleExplanation);

  // Names for controls whose visible text is a symbol (gradio's Button takes no aria-label).
  const ARIA_LABELS = {"pg-refresh": "Refresh the model status"};
  const nameControls = () => Object.entries(ARIA_LABELS).forEach(([id, name]) => {
    const element = document.getElementById(id);
    const button = element && (element.tagName === "BUTTON" ? element : element.querySelector("button"));
    if (button && button.getAttribute("aria-label") !== name) { button.setAttribute("aria-label", name); button.title = name; }
  });

  // Keyboard: the page's first stop is a "skip to the tabs" link (shown when focused), which focuses the open tab.
  const skip = document.createElement("a");
  skip.href = "#pg-tabs";
  skip.className = "pg-skip";
  skip.textContent = "Skip to the tabs";
  skip.addEventListener("click", (event) => {
    const tab = document.querySelector("#pg-tabs [role='tab'][aria-selected='true']") ||
                document.querySelector("#pg-tabs [role='tab']");
    if (tab) { event.preventDefault(); tab.focus(); }
  });
  document.body.prepend(skip);

  const addHead = (event) => {
    const point = event.points && event.points.find((p) => Array.isArray(p.pointIndex));
    const box = document.querySelector("#inside-heads textarea, #inside-heads input");
    if (!point || !box) return;
    const [layer, head] = point.pointIndex;
    const heads = box.value.split(",").map((part) => part.trim()).filter(Boolean);
    if (heads.includes(`${layer}.${head}`)) return;
    box.value = [...heads, `${layer}.${head}`].join(", ");
    box.dispatchEvent(new Event("input", {bubbles: true}));  // gradio reads the textbox's value on input
  };
  const wireImportance = () => {
    const plot = document.querySelector("#inside-importance .js-plotly-plot");
    // plotly makes a new event emitter (gd._ev) when it redraws from scratch: listen again on each new one
    const emitter = plot && (plot._ev || plot);
    if (plot && plot.on && plot._pgClicks !== emitter) { plot._pgClicks = emitter; plot.on("plotly_click", addHead); }
  };

  const applyAll = () => {
    const on = document.body.classList.contains("pg-presenter");
    nameControls();
    wireImportance();
    document.querySelectorAll(".js-plotly-plot").forEach((plot) => { nameImage(plot); rescale(plot, on); });
    foldExplanations(on);
  };
  // At most once per frame: a plot gradio redraws is back at its target size on the next frame (a 250 ms debounce
  // left a redrawn plot at its original fonts, under the floor, for as long as its tab kept changing).
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; applyAll(); });
  }).observe(document.body, {childList: true, subtree: true, attributes: true, attributeFilter: ["class"]});
}
