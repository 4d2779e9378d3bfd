"""Pure figure functions: plain data in, plotly Figure out. One module per area; no gradio, no models."""
