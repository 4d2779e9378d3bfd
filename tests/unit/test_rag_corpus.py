"""Corpus loading (limits, bad files) and the chunker (coverage, exact overlap, no loss)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground.limits import LIMITS, PUBLIC_LIMITS
from playground.rag import chunking, corpus
from playground.rag.chunking import ChunkingError, ChunkingSettings, chunk_corpus, chunk_spans, unit_boundaries
from playground.rag.corpus import CorpusError, corpus_from_inputs, python_reference_corpus, read_document

# -- corpus ----------------------------------------------------------------------------------------


def test_the_python_reference_has_its_79_topics_and_a_stable_fingerprint():
    reference = python_reference_corpus()
    assert len(reference.documents) == 79
    assert {"assert", "specialnames", "string-methods"} <= {d.source for d in reference.documents}
    assert reference.fingerprint == python_reference_corpus().fingerprint
    assert reference.fingerprint != python_reference_corpus(["assert"]).fingerprint
    assert reference.stats()["characters"] == sum(len(d.text) for d in reference.documents)


def test_unknown_topics_are_named():
    with pytest.raises(CorpusError, match="not-a-topic"):
        python_reference_corpus(["assert", "not-a-topic"])


def test_fingerprint_does_not_collide_by_concatenation():
    a = corpus.Corpus("x", (corpus.Document("ab", "c"),))
    b = corpus.Corpus("x", (corpus.Document("a", "bc"),))
    assert a.fingerprint != b.fingerprint


def test_text_markdown_and_pasted_text_make_one_corpus(tmp_path):
    (tmp_path / "notes.txt").write_text("Line one.\r\nLine two.\n", encoding="utf-8")
    (tmp_path / "README.md").write_bytes("\ufeff# Title\n\nCafé".encode("utf-8"))  # a BOM is fine
    built = corpus_from_inputs([tmp_path / "notes.txt", tmp_path / "README.md"], "  pasted words  ")
    assert [d.source for d in built.documents] == ["notes.txt", "README.md", "pasted text"]
    assert [d.text for d in built.documents] == ["Line one.\nLine two.", "# Title\n\nCafé", "pasted words"]


def test_two_files_with_the_same_name_stay_distinct(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "notes.txt").write_text(f"from {folder}", encoding="utf-8")
    built = corpus_from_inputs([tmp_path / "a" / "notes.txt", tmp_path / "b" / "notes.txt"], "")
    assert [d.source for d in built.documents] == ["notes.txt", "notes.txt (2)"]


@pytest.mark.parametrize("name, content, message", [
    ("tool.exe", b"MZ\x90\x00", "not supported"),
    ("data.pkl", b"\x80\x04K\x01.", "not supported"),
    ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
    ("latin1.txt", "café au lait".encode("latin-1"), r"not valid UTF-8 \(byte 0xe9 at position 3\)"),
    ("empty.md", b"   \n", "empty"),
    ("fake.pdf", b"hello, not a pdf", "not a PDF"),
])
def test_bad_files_are_refused_with_a_message_naming_them(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=message) as info:
        read_document(path)
    assert name in str(info.value)


def test_size_limits_are_stated(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("x" * 200, encoding="utf-8")
    read_document(big)  # the default limits: fine
    with pytest.raises(CorpusError, match=r"big.txt: 0.0 MB is over the 0 MB limit per file"):
        read_document(big, replace(LIMITS, rag_file_bytes=100))
    small = tmp_path / "small.txt"
    small.write_text("y" * 100, encoding="utf-8")
    with pytest.raises(CorpusError, match="the limit is 0 MB in all"):
        corpus_from_inputs([big, small], "", replace(LIMITS, rag_total_bytes=150))
    with pytest.raises(CorpusError, match="2 files: the limit is 1 files"):
        corpus_from_inputs([big, small], "", replace(LIMITS, rag_files=1))


def test_empty_inputs_explain_what_to_do():
    with pytest.raises(CorpusError, match="The corpus is empty"):
        corpus_from_inputs([], "   ")


def test_a_public_server_refuses_a_corpus_the_default_limits_accept(tmp_path):
    from playground.ui.rag_tab import CORPUS_CHOICES, corpus_for

    files = []
    for number in range(PUBLIC_LIMITS.rag_files + 1):
        files.append(tmp_path / f"note{number}.txt")
        files[-1].write_text(f"note {number}", encoding="utf-8")
    assert len(corpus_for(CORPUS_CHOICES[1], files, "", LIMITS).documents) == len(files)
    with pytest.raises(CorpusError, match=f"the limit is {PUBLIC_LIMITS.rag_files} files"):
        corpus_for(CORPUS_CHOICES[1], files, "", PUBLIC_LIMITS)
    pdf = tmp_path / "one-page.pdf"
    pdf.write_bytes(_pdf_bytes("Retrieval needs good chunks."))
    with pytest.raises(CorpusError, match="one-page.pdf: 1 pages; the limit is 0 pages"):
        read_document(pdf, replace(PUBLIC_LIMITS, rag_pdf_pages=0))


def test_long_pasted_text_is_capped_with_a_note():
    built = corpus_from_inputs([], "abcdefghijklmnop", replace(LIMITS, rag_pasted_chars=10))
    assert built.documents[0].text == "abcdefghij"
    assert "first 10 of 16 characters" in built.notes[0]


def _pdf_bytes(text: str) -> bytes:
    """A one-page PDF with a text layer, written by hand (PDF objects + xref), so no writer library is needed."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_pdf_text_is_extracted(tmp_path):
    path = tmp_path / "paper.pdf"
    path.write_bytes(_pdf_bytes("Retrieval needs good chunks."))
    assert read_document(path).text == "Retrieval needs good chunks."


def test_a_broken_pdf_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\n" + b"garbage" * 20)
    with pytest.raises(CorpusError, match="broken.pdf"):
        read_document(path)


# -- chunking --------------------------------------------------------------------------------------


def test_settings_are_validated_with_the_allowed_range():
    with pytest.raises(ChunkingError, match="one of"):
        ChunkingSettings("words", 10, 0)
    with pytest.raises(ChunkingError, match=r"1\.\.20000"):
        ChunkingSettings("characters", 0, 0)
    with pytest.raises(ChunkingError, match=r"0\.\.9"):
        ChunkingSettings("characters", 10, 10)


def test_character_chunks_by_hand():
    spans = chunk_spans(unit_boundaries("abcdefghij", "characters"), size=4, overlap=1)
    assert spans == [(0, 4), (3, 7), (6, 10)]


def test_sentences_and_paragraphs_keep_their_trailing_whitespace():
    text = "One. Two!  Three?\n\nNew paragraph. End"
    b = unit_boundaries(text, "sentences")
    assert [text[s:e] for s, e in zip(b[:-1], b[1:])] == ["One. ", "Two!  ", "Three?\n\n", "New paragraph. ", "End"]
    b = unit_boundaries(text, "paragraphs")
    assert [text[s:e] for s, e in zip(b[:-1], b[1:])] == ["One. Two!  Three?\n\n", "New paragraph. End"]


def test_token_units_start_at_token_starts(tiny_tokenizer):
    text = "The capital of France is Paris."
    offsets = tiny_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    b = unit_boundaries(text, "tokens", tiny_tokenizer)
    assert set(b[1:-1]) <= {start for start, _ in offsets}
    assert b[0] == 0 and b[-1] == len(text)


TEXT = st.lists(st.sampled_from(["a", "b", " ", ".", "!", "?", "\n", "\t", "\n\n", "é", "中"]), max_size=200).map("".join)


def _check_chunks(text: str, unit: str, size: int, overlap: int, tokenizer=None) -> None:
    boundaries = unit_boundaries(text, unit, tokenizer)
    # The units tile the text: strictly increasing offsets from 0 to len(text).
    assert boundaries[0] == 0 and boundaries[-1] == len(text)
    assert np.all(np.diff(boundaries) > 0) or len(text) == 0
    pieces = chunking.chunk_text(text, ChunkingSettings(unit, size, overlap), tokenizer)
    if not text:
        assert pieces == []
        return
    assert pieces[0][1] == 0 and pieces[-1][2] == len(text)
    rebuilt = pieces[0][0]
    for (prev_text, prev_start, prev_end), (text_, start, end) in zip(pieces, pieces[1:]):
        assert start <= prev_end  # no gap
        rebuilt += text_[prev_end - start:]  # drop the overlap, keep the rest: nothing lost
        first = int(np.searchsorted(boundaries, prev_start))
        last = int(np.searchsorted(boundaries, prev_end))
        assert last - first == size  # every chunk but the last is exactly `size` units...
        shared = last - int(np.searchsorted(boundaries, start))
        assert shared == overlap  # ...and shares exactly `overlap` units with the next
    for chunk_text_, start, end in pieces:
        assert chunk_text_ == text[start:end]
    assert rebuilt == text


@settings(max_examples=150, deadline=None)
@given(TEXT, st.sampled_from(["characters", "sentences", "paragraphs"]), st.integers(1, 12), st.data())
def test_chunks_cover_the_text_with_the_requested_overlap(text, unit, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    _check_chunks(text, unit, size, overlap)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(list("The capital of France is Paris. \n")), max_size=200),
       st.integers(1, 8), st.data())
def test_token_chunks_cover_the_text_with_the_requested_overlap(tiny_tokenizer, text, size, data):
    _check_chunks(text, "tokens", size, data.draw(st.integers(0, size - 1)), tiny_tokenizer)


def test_character_chunks_have_exact_lengths():
    text = "x" * 1000
    pieces = chunking.chunk_text(text, ChunkingSettings("characters", 300, 50))
    assert [end - start for _, start, end in pieces] == [300, 300, 300, 250]
    assert [start for _, start, _ in pieces] == [0, 250, 500, 750]


def test_corpus_chunks_carry_source_offsets_and_token_counts(tiny_tokenizer):
    built = python_reference_corpus(["assert", "pass"])
    chunk_set = chunk_corpus(built, ChunkingSettings("sentences", 3, 1), tiny_tokenizer)
    texts = {d.source: d.text for d in built.documents}
    assert [c.index for c in chunk_set.chunks] == list(range(len(chunk_set.chunks)))
    for chunk in chunk_set.chunks:
        assert texts[chunk.source][chunk.start:chunk.end] == chunk.text
        assert chunk.token_count == len(tiny_tokenizer(chunk.text, add_special_tokens=False)["input_ids"])


def test_too_many_chunks_are_capped_with_a_note():
    built = python_reference_corpus(["assert"])
    chunk_set = chunk_corpus(built, ChunkingSettings("characters", 10, 0), max_chunks=5)
    assert len(chunk_set.chunks) == 5
    assert re.search(r"makes \d+ chunks; only the first 5 are indexed", chunk_set.notes[0])


@pytest.mark.parametrize("n_units", [1, 2, 3, 4, 5, 9, 10, 11, 100])
@pytest.mark.parametrize("size, overlap", [(1, 0), (2, 1), (4, 1), (4, 3), (10, 0)])
def test_chunk_count_is_the_number_of_spans(n_units, size, overlap):
    from playground.rag.chunking import chunk_count

    boundaries = np.arange(n_units + 1, dtype=np.int64)
    assert chunk_count(n_units, size, overlap) == len(chunk_spans(boundaries, size, overlap))


def test_a_tiny_chunk_size_on_a_huge_text_builds_only_the_chunks_it_keeps():
    """Issue 24 (a sibling of the hostile PDF): chunk size 1 on 1,000,000 characters made every one of the
    1 M chunks (hundreds of MB) before the cap kept 10,000."""
    import tracemalloc

    from playground.rag.corpus import Corpus, Document

    corpus = Corpus("pasted", (Document("pasted text", "ab" * 500_000),))
    tracemalloc.start()
    chunks = chunk_corpus(corpus, ChunkingSettings("characters", 1, 0), max_chunks=10_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(chunks.chunks) == 10_000 and chunks.chunks[-1].end == 10_000
    assert any("makes 1,000,000 chunks" in note for note in chunks.notes)
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MB"
