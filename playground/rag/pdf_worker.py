"""Extract a PDF's text layer in a separate process with a CPU and memory budget (issue 24).

Run by `corpus.extract_pdf_text` as `python -I pdf_worker.py MAX_PAGES MAX_CHARS CPU_SECONDS MEMORY_BYTES`
with the PDF's bytes on stdin; prints one JSON object on stdout. Self-contained on purpose (stdlib + pypdf
only, no `playground` import): it starts in ~0.15 s instead of importing torch through playground.rag.

Why a process: pypdf parses a page's whole content stream in pure Python before the first operator can be
checked, and pages may share one stream (or call the same form XObject many times), so a 7.8 KB PDF can ask
for minutes of CPU; no check inside pypdf bounds that. The kernel does: RLIMIT_CPU ends the process when its
budget is spent (and the parent kills it at a wall-clock deadline), RLIMIT_AS caps its memory.

Output: {"pages": [text, ...], "cpu_seconds": s} or {"refused": "encrypted" | "pages" | "chars" | "unreadable",
...details, "cpu_seconds": s}.
"""

from __future__ import annotations

import io
import json
import resource
import sys


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def extract(data: bytes, max_pages: int, max_chars: int) -> dict:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            return {"refused": "encrypted"}
        count = len(reader.pages)
        if count > max_pages:
            return {"refused": "pages", "pages": count}
        pages, chars = [], 0
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            chars += len(text)
            if chars > max_chars:  # checked page by page: stop reading at the first page over the cap
                return {"refused": "chars", "page": number, "chars": chars}
            pages.append(text)
        return {"pages": pages}
    except Exception as error:  # any parse failure of a hostile or broken file is a refusal, named
        return {"refused": "unreadable", "error": f"{type(error).__name__}: {error}"[:300]}


def main(argv: list[str]) -> None:
    max_pages, max_chars, cpu_seconds, memory_bytes = (int(value) for value in argv[1:5])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    result = extract(sys.stdin.buffer.read(), max_pages, max_chars)
    result["cpu_seconds"] = round(_cpu_seconds(), 3)
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
