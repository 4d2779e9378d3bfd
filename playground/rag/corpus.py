"""Corpora to retrieve from: Python's own language reference, or the user's files and pasted text.

Uploaded files are read as bytes and decoded (text) or parsed by pypdf (PDF): never executed, never
unpickled. Every refusal is a `CorpusError` whose message names the file and the limit or the fix.

    >>> corpus = corpus_from_inputs([], "Paris is the capital of France.")
    >>> corpus.documents[0].source, corpus.stats()["characters"]
    ('pasted text', 31)
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from playground.limits import LIMITS, MIB, Limits

# Caps come from a Limits table (rag_file_bytes per file, rag_total_bytes all files, rag_files, rag_pasted_chars,
# rag_pdf_pages, rag_pdf_seconds / rag_pdf_chars for all the PDFs of one request): LIMITS by default, the
# server's own (tighter when public) when the tab passes ctx.limits.
TEXT_SUFFIXES = (".txt", ".md")
PDF_SUFFIX = ".pdf"
ALLOWED_SUFFIXES = (*TEXT_SUFFIXES, PDF_SUFFIX)
PYTHON_REFERENCE = "Python language reference"


def digest_texts(texts: Iterable[str]) -> str:
    """sha256 of a sequence of texts, each length-prefixed so ("ab", "c") and ("a", "bc") differ."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


class CorpusError(ValueError):
    """The corpus cannot be built from what was given; the message says which input and why."""


@dataclass(frozen=True)
class Document:
    source: str  # a pydoc topic key, a file name or "pasted text"
    text: str


@dataclass(frozen=True)
class Corpus:
    name: str
    documents: tuple[Document, ...]
    notes: tuple[str, ...] = field(default=())  # what was capped or skipped, in words

    @property
    def fingerprint(self) -> str:
        """sha256 over every (source, text)."""
        return digest_texts(part for document in self.documents for part in (document.source, document.text))

    def stats(self) -> dict[str, Any]:
        lengths = [len(document.text) for document in self.documents]
        return {
            "name": self.name,
            "documents": len(self.documents),
            "characters": sum(lengths),
            "words": sum(len(document.text.split()) for document in self.documents),
            "shortest_document_chars": min(lengths, default=0),
            "longest_document_chars": max(lengths, default=0),
            "fingerprint": self.fingerprint[:16],
            "notes": list(self.notes),
        }


def _clean(text: str) -> str:
    """Unify line endings and trim the ends, so offsets refer to the text we show."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def python_reference_corpus(topics: Sequence[str] | None = None) -> Corpus:
    """The 79 topics of the language reference that CPython ships (`pydoc_data.topics`): offline."""
    from pydoc_data.topics import topics as all_topics

    keys = sorted(all_topics) if topics is None else list(topics)
    unknown = [key for key in keys if key not in all_topics]
    if unknown:
        raise CorpusError(f"Unknown pydoc topics: {unknown}. Known: {', '.join(sorted(all_topics))}")
    documents = tuple(Document(key, _clean(all_topics[key])) for key in keys)
    name = PYTHON_REFERENCE if topics is None else f"{PYTHON_REFERENCE} ({len(keys)} topics)"
    return Corpus(name, documents)


def _looks_binary(data: bytes) -> bool:
    """NUL bytes, or many control characters in the first 8 KB: an executable, image, archive..."""
    head = data[:8192]
    if b"\x00" in head:
        return True
    controls = sum(1 for byte in head if byte < 32 and byte not in b"\t\n\r\f\x0b\x1b")
    return len(head) > 0 and controls / len(head) > 0.05


def decode_text(name: str, data: bytes) -> str:
    """UTF-8 text (a BOM is fine) or a CorpusError saying why not."""
    if _looks_binary(data):
        raise CorpusError(f"{name}: this looks like a binary file, not text (it contains NUL/control bytes). "
                          "Upload plain .txt or .md text, or a .pdf.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CorpusError(f"{name}: not valid UTF-8 (byte 0x{data[error.start]:02x} at position {error.start}). "
                          "Save the file as UTF-8 and upload it again.") from error


class PdfBudget:
    """What PDF text extraction may still spend in one request: CPU seconds and characters, shared by its files."""

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.limits = limits
        self.seconds = float(limits.rag_pdf_seconds)
        self.chars = limits.rag_pdf_chars


PDF_WORKER = Path(__file__).with_name("pdf_worker.py")


def _run_pdf_worker(data: bytes, max_pages: int, max_chars: int, cpu_seconds: int,
                    memory_bytes: int) -> dict[str, Any] | None:
    """The worker's JSON answer, or None when it ran out of CPU, memory or wall-clock time (killed)."""
    # The wall-clock deadline covers a CPU shared with other requests; the worker's RLIMIT_CPU is the real cap.
    wall_seconds = 2 * cpu_seconds + 10
    try:
        finished = subprocess.run([sys.executable, "-I", str(PDF_WORKER), str(max_pages), str(max_chars),
                                   str(cpu_seconds), str(memory_bytes)], input=data, capture_output=True,
                                  timeout=wall_seconds, check=False)
    except subprocess.TimeoutExpired:
        return None  # subprocess.run killed it
    try:
        return json.loads(finished.stdout) if finished.returncode == 0 else None
    except ValueError:
        return None


def extract_pdf_text(name: str, data: bytes, limits: Limits = LIMITS, budget: PdfBudget | None = None) -> str:
    """The text layer of a PDF, page by page (pypdf: pure Python, parses, never runs embedded code).

    Runs in a separate process (rag/pdf_worker.py) that the kernel stops when the request's CPU budget is
    spent: a few KB of PDF can hold pages sharing one content stream of millions of operators, so pages
    alone do not bound the work. Characters are counted page by page against what is left of the budget.
    """
    if not data.startswith(b"%PDF-"):
        raise CorpusError(f"{name}: not a PDF file (it does not start with %PDF-).")
    budget = budget or PdfBudget(limits)
    if budget.seconds < 1:
        raise CorpusError(f"{name}: the PDFs before it used this request's {limits.rag_pdf_seconds} s of CPU for "
                          "reading PDFs; upload fewer or simpler PDFs.")
    cpu_seconds = max(1, math.floor(budget.seconds))
    result = _run_pdf_worker(data, limits.rag_pdf_pages, budget.chars, cpu_seconds, limits.rag_pdf_memory_bytes)
    if result is None:
        budget.seconds = 0.0
        raise CorpusError(f"{name}: reading its text needed more than {cpu_seconds} s of CPU (the limit for the "
                          f"PDFs of one request is {limits.rag_pdf_seconds} s) or more than "
                          f"{limits.rag_pdf_memory_bytes // MIB:,} MB of memory; its pages may hold huge or repeated "
                          "content. Upload its text as .txt instead.")
    budget.seconds -= max(float(result.get("cpu_seconds", 0.0)), 0.0)
    refused = result.get("refused")
    if refused == "encrypted":
        raise CorpusError(f"{name}: the PDF is encrypted; remove the password and upload it again.")
    if refused == "pages":
        raise CorpusError(f"{name}: {result['pages']} pages; the limit is {limits.rag_pdf_pages} pages.")
    if refused == "chars":
        raise CorpusError(f"{name}: more than {budget.chars:,} characters of text by page {result['page']} (the "
                          f"limit is {limits.rag_pdf_chars:,} characters of PDF text per request).")
    if refused is not None:
        raise CorpusError(f"{name}: could not read this PDF ({result.get('error', refused)}).")
    pages = [str(page) for page in result["pages"]]
    budget.chars -= sum(len(page) for page in pages)
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise CorpusError(f"{name}: the PDF has no extractable text (scanned pages are images; run OCR first).")
    return text


def read_document(path: str | Path, limits: Limits = LIMITS, budget: PdfBudget | None = None) -> Document:
    """One uploaded file as a Document, after checking its type, size and encoding (PDFs spend `budget`: pass
    one PdfBudget for all the files of a request)."""
    path = Path(path)
    name = path.name
    suffix = path.suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise CorpusError(f"{name}: files of type '{suffix or '(none)'}' are not supported; "
                          f"upload {', '.join(ALLOWED_SUFFIXES)} files.")
    size = path.stat().st_size
    if size > limits.rag_file_bytes:
        raise CorpusError(f"{name}: {size / 2**20:.1f} MB is over the {limits.rag_file_bytes // 2**20} MB limit per "
                          "file.")
    data = path.read_bytes()
    text = extract_pdf_text(name, data, limits, budget) if suffix == PDF_SUFFIX else decode_text(name, data)
    text = _clean(text)
    if not text:
        raise CorpusError(f"{name}: the file is empty.")
    return Document(name, text)


def _unique_sources(documents: list[Document]) -> list[Document]:
    """Two uploads named notes.txt become 'notes.txt' and 'notes.txt (2)', so citations stay unambiguous."""
    seen: dict[str, int] = {}
    unique = []
    for document in documents:
        count = seen.get(document.source, 0) + 1
        seen[document.source] = count
        unique.append(document if count == 1 else Document(f"{document.source} ({count})", document.text))
    return unique


def corpus_from_inputs(files: Sequence[str | Path] | None, pasted: str | None, limits: Limits = LIMITS) -> Corpus:
    """The user's corpus: uploaded files plus pasted text. Any bad file refuses the whole corpus."""
    paths = [Path(path) for path in files or []]
    if len(paths) > limits.rag_files:
        raise CorpusError(f"{len(paths)} files: the limit is {limits.rag_files} files.")
    total = sum(path.stat().st_size for path in paths)
    if total > limits.rag_total_bytes:
        raise CorpusError(f"The files add up to {total / 2**20:.1f} MB; the limit is "
                          f"{limits.rag_total_bytes // 2**20} MB in all.")
    budget = PdfBudget(limits)
    documents = [read_document(path, limits, budget) for path in paths]
    notes = []
    pasted = _clean(pasted or "")
    if len(pasted) > limits.rag_pasted_chars:
        notes.append(f"Pasted text cut to its first {limits.rag_pasted_chars:,} of {len(pasted):,} characters.")
        pasted = pasted[:limits.rag_pasted_chars]
    if pasted:
        documents.append(Document("pasted text", pasted))
    if not documents:
        raise CorpusError("The corpus is empty: upload .txt, .md or .pdf files or paste some text "
                          "(or pick the Python language reference).")
    name = "Your corpus" if paths else "Pasted text"
    return Corpus(name, tuple(_unique_sources(documents)), tuple(notes))
