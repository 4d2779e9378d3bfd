"""A small PDF must not buy minutes of CPU (issue 24): text extraction is bounded by work, not pages."""

from __future__ import annotations

import time
import zlib
from dataclasses import replace

import pytest

from playground.limits import LIMITS, PUBLIC_LIMITS
from playground.rag.corpus import CorpusError, corpus_from_inputs, read_document


def hostile_pdf(pages: int = 20, repeats: int = 570_000) -> bytes:
    """`pages` pages that all share ONE FlateDecode content stream of `(A) Tj` x `repeats` (~4 MB decompressed
    from a few KB): pypdf re-parses the shared stream for every page (~8 s of CPU each on the dev machine)."""
    content = zlib.compress(b"BT /F1 12 Tf 10 10 Td " + b"(A) Tj " * repeats + b"ET", 9)
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages)).encode()
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>",
               2: b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
               3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               4: b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream"}
    for i in range(pages):
        objects[5 + i] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                          b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>")
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number in sorted(objects):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)




def test_the_hostile_pdf_is_small():
    assert len(hostile_pdf()) < 32_000  # 20 pages, ~80 MB of operators to parse


def test_a_hostile_pdf_is_stopped_at_its_cpu_budget(tmp_path):
    path = tmp_path / "bomb.pdf"
    path.write_bytes(hostile_pdf())
    limits = replace(LIMITS, rag_pdf_seconds=2)
    started = time.monotonic()
    with pytest.raises(CorpusError, match=r"bomb\.pdf: .*2 s of CPU"):
        read_document(path, limits)
    assert time.monotonic() - started < 15  # before: ~160 s of CPU (20 pages x ~8 s); the budget is 2 s


def test_the_cpu_budget_is_shared_by_the_files_of_one_corpus(tmp_path):
    paths = []
    for number in range(3):
        paths.append(tmp_path / f"bomb{number}.pdf")
        paths[-1].write_bytes(hostile_pdf(pages=3))
    started = time.monotonic()
    with pytest.raises(CorpusError, match=r"bomb0\.pdf"):
        corpus_from_inputs(paths, None, replace(LIMITS, rag_pdf_seconds=2))
    assert time.monotonic() - started < 15


def test_pdf_text_over_the_character_cap_is_refused_naming_the_page(tmp_path):
    path = tmp_path / "long.pdf"
    path.write_bytes(hostile_pdf(pages=3, repeats=400))
    with pytest.raises(CorpusError, match=r"long\.pdf: .*page 3.*1,000 characters"):
        read_document(path, replace(LIMITS, rag_pdf_chars=1000))
    assert len(read_document(path, replace(LIMITS, rag_pdf_chars=1200)).text) >= 1200 - 10


def test_the_public_caps_are_tighter():
    assert PUBLIC_LIMITS.rag_pdf_seconds < LIMITS.rag_pdf_seconds
    assert PUBLIC_LIMITS.rag_pdf_chars < LIMITS.rag_pdf_chars
