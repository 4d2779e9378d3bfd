"""RAG tab: chunk a corpus, embed it, retrieve with dense / BM25 / hybrid scores, rerank with the LLM,
answer with citations, and evaluate retrieval. Handlers are thin adapters over playground.rag
and playground.figures.rag."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import gradio as gr

from playground import rag
from playground.engine import EngineTokenSource
from playground.figures import rag as figures
from playground.rag.chunking import chunk_count, suggested_chunking
from playground.rag.corpus import ALLOWED_SUFFIXES, PYTHON_REFERENCE, PdfBudget, read_document
from playground.rag.embedding import no_progress
from playground.rag.evaluation import EVAL_KS, load_questions
from playground.rag.ranking import CANDIDATE_POOL
from playground.rag.search import RRF_K
from playground.runtime.registry import DEFAULT_EMBEDDING_MODEL
from playground.limits import LIMITS, Limits, whole_number_in
from playground.ui.common import explanation
from playground.ui.context import AppContext
from playground.ui.engine import engine_or_local
from playground.ui.errors import user_errors

EXPLANATION = r"""
### What you are seeing
Retrieval-augmented generation answers a question from **passages found in a corpus** instead of from
the model's memory alone. The corpus is cut into overlapping **chunks**, and each chunk is scored
against the question three ways:
- **dense**: both are embedded by all-MiniLM-L6-v2 into unit vectors, $\cos(q, c) = e_q \cdot e_c$ — similar *meaning*;
- **BM25**: shared *words*, $\sum_{t \in q} \mathrm{idf}(t)\,\frac{f_{t,c}}{f_{t,c} + k_1\,(1 - b + b\,|c| / \overline{|c|})}$
  ($k_1 = 1.5$, $b = 0.75$, English stop words removed);
- **hybrid**: reciprocal rank fusion of the two rankings, $\mathrm{RRF}(c) = \sum_{r \in \{\text{dense},\,\text{BM25}\}}
  \frac{1}{60 + \mathrm{rank}_r(c)}$.

The top chunks can be **reranked** by the loaded LLM acting as a judge: the score is
$P(\text{Yes}) / (P(\text{Yes}) + P(\text{No}))$ for *"Is this passage relevant to the question?"*,
one forward pass per chunk. The best chunks then become numbered context for the model's answer.

**Takeaway:** the model can only answer from what retrieval hands it — watch which chunks make the cut, and why.
"""

ANSWER_EXPLANATION = """
### Grounded answer
The retrieved chunks (after reranking when it is on) become numbered passages in a chat prompt; the
model answers greedily and should cite them as [n]. **Lost in the middle:** place the best chunk first,
in the middle or last — small models often use what is at the edges of the context.
"""

EVALUATION_EXPLANATION = """
### Retrieval evaluation
{count} questions we wrote about the Python language reference, each with the topics whose text
answers it (`assets/rag/questions.json`). **recall@k**: share of questions with a chunk of a relevant
topic in the top k; **MRR**: mean of 1 / rank of the first such chunk; **nDCG@k**: rank-discounted
gain against the ideal order. Always on the Python reference corpus, with the chunking chosen above.
"""

CORPUS_CHOICES = [f"{PYTHON_REFERENCE} (79 topics, ships with Python)", "Your files and pasted text"]
EMPTY_QUESTION = "Type a question above to see how every chunk scores."
EMPTY_ANSWER = "Type a question above, then press Answer."
# the same places once a question is in the box ("Type a question above" would no longer be true)
READY_QUESTION = "Press **Retrieve** (or Enter in the question box) to see how every chunk scores for this question."
READY_ANSWER = "Press **Answer** to have the model answer this question from the retrieved chunks."
NO_INDEX = "Press **Build index** to chunk and embed the corpus (or just ask: it builds on demand)."
TABLE_HEADERS = ["rank", "source", "dense", "BM25", "hybrid rank", "rerank P(Yes)", "rank change", "chunk"]
TABLE_WIDTHS = ["6%", "12%", "8%", "8%", "8%", "9%", "8%", "41%"]
CHUNK_HEADERS = ["#", "source", "tokens", "chars", "chunk"]
CHUNK_WIDTHS = ["7%", "14%", "8%", "8%", "63%"]
POSITION_HEADERS = ["best chunk placed", "its number", "answer", "citations", "cites the best chunk",
                    "says I don't know"]
POSITION_WIDTHS = ["11%", "8%", "51%", "10%", "10%", "10%"]
MAX_TABLE_CHUNKS = 300
ProgressFn = Callable[[float, str], None]


# ---------------------------------------------------------------------------------------------
# Adapters (no math here: it is all in playground.rag)
# ---------------------------------------------------------------------------------------------


def corpus_for(source: str, files: list[str] | None, pasted: str | None, limits: Limits = LIMITS) -> rag.Corpus:
    if source == CORPUS_CHOICES[0]:
        return rag.python_reference_corpus()
    return rag.corpus_from_inputs([str(path) for path in files or []], pasted, limits)


def chunking_for(unit: str, size: float | None, overlap: float | None) -> rag.ChunkingSettings:
    if size is None or overlap is None:
        raise rag.ChunkingError("Set both the chunk size and the overlap.")
    return rag.ChunkingSettings(unit, int(size), int(overlap))


def chunking_note(corpus: rag.Corpus, chosen: rag.ChunkingSettings) -> str:
    """What the corpus switch chose, and why (in the stats box until the index is built)."""
    lengths = [len(document.text) for document in corpus.documents]
    count = sum(chunk_count(length, chosen.size, chosen.overlap) for length in lengths)
    default = rag.ChunkingSettings()
    default_count = sum(chunk_count(length, default.size, default.overlap) for length in lengths)
    because = (f" ({default.size}-{default.unit[:-1]} chunks would give {default_count})"
               if (chosen.size, chosen.overlap) != (default.size, default.overlap) else "")
    return (f"Using **your text** ({len(lengths)} document{'s' if len(lengths) != 1 else ''}, {sum(lengths):,} "
            f"characters): chunks of {chosen.describe()} → **{count} chunks**{because}. Change them above if you "
            "like. A copied link cannot carry your text: it opens on the Python reference.")


def question_messages(question: str | None) -> tuple[str, str]:
    """The retrieval summary's and the answer's messages before a result: what to do next for this question.

    >>> question_messages("  ") == (EMPTY_QUESTION, EMPTY_ANSWER)
    True
    >>> question_messages("Is a tuple mutable?") == (READY_QUESTION, READY_ANSWER)
    True
    """
    return (READY_QUESTION, READY_ANSWER) if (question or "").strip() else (EMPTY_QUESTION, EMPTY_ANSWER)


def reporter(progress: gr.Progress) -> ProgressFn:
    return lambda fraction, message: progress(fraction, desc=message)


def model_key(loaded: Any) -> str:
    return f"{loaded.spec.key}|{loaded.precision.label}|{loaded.device}"


def _score(value: float | None, digits: int = 4) -> float | str:
    return "-" if value is None else round(value, digits)


def results_table(retrieval: rag.Retrieval) -> list[list[Any]]:
    return [[row.rank, row.chunk.source, _score(row.dense_score), _score(row.bm25_score, 3),
             "-" if row.hybrid_rank is None else row.hybrid_rank, _score(row.rerank_score),
             "-" if row.rank_change is None else f"{row.rank_change:+d}", row.chunk.preview]
            for row in retrieval.rows]


def chunks_table(chunk_set: rag.ChunkSet) -> list[list[Any]]:
    return [[chunk.index, chunk.source, chunk.token_count, len(chunk.text), chunk.preview]
            for chunk in chunk_set.chunks[:MAX_TABLE_CHUNKS]]


def stats_markdown(index: rag.RetrievalIndex) -> str:
    stats = index.stats()
    corpus, chunks = stats["corpus"], stats["chunks"]
    origin = "loaded from the disk cache" if index.from_cache else "computed now and cached on disk"
    lines = [
        f"**{corpus['name']}**: {corpus['documents']} documents · {corpus['characters']:,} characters · "
        f"{corpus['words']:,} words",
        f"**{chunks['chunks']:,} chunks** of {index.chunk_set.settings.describe()} · mean {chunks['mean_chars']:.0f} "
        f"characters / {chunks['mean_tokens']:.0f} tokens · {chunks['chunks_over_window']} chunks longer than the "
        f"embedder's {chunks['embedder_window_tokens']}-token window (it reads only their start)",
        f"Embeddings ({stats['embedding_dim']}-d, {stats['embedding_model']}) {origin}; dense search: "
        f"{stats['dense_backend']}; built in {stats['build_seconds']:.1f} s",
    ]
    if len(index.chunks) > MAX_TABLE_CHUNKS:
        lines.append(f"The table shows the first {MAX_TABLE_CHUNKS} of {len(index.chunks):,} chunks.")
    lines += [f"ℹ️ {note}" for note in chunks["notes"]]
    return "\n\n".join(lines)


def retrieval_markdown(retrieval: rag.Retrieval) -> str:
    terms = ", ".join(f"`{term}`" for term in retrieval.query_terms) or "none (only stop words)"
    cut = retrieval.cutoffs()
    cut_text = " · ".join(f"{name} {value:.4f}" for name, value in cut.items() if value is not None)
    lines = [f"**{retrieval.method}**{' + LLM rerank' if retrieval.reranked else ''}, top {retrieval.k} of "
             f"{len(retrieval.dense_scores):,} chunks · BM25 query terms: {terms} · hybrid fuses the top "
             f"{CANDIDATE_POOL} of each list with RRF k = {RRF_K}",
             f"Top-{retrieval.k} cutoffs: {cut_text}"]
    lines += [f"ℹ️ {note}" for note in retrieval.notes]
    return "\n\n".join(lines)


PROBLEM_SENTENCES = {
    "cites-nothing": "**Why no [n]:** the answer cites no passage. A 135M model often ignores the instruction to cite; "
                     "check by hand whether its words come from a passage below, or try a larger model.",
    "invalid-citations": "**Why the odd numbers:** it cites passages that do not exist, a sign it imitates the "
                         "citation format without reading the passages.",
    "repeats": "**Why it repeats itself:** greedy decoding of a small model can fall into a loop, and once a phrase "
               "is repeated its next repetition becomes the most likely continuation; fewer new tokens or a "
               "shorter context help.",
}


def answer_markdown(answer: rag.GroundedAnswer) -> str:
    quoted = "\n".join(f"> {line}" for line in (answer.answer or "(empty)").splitlines())
    if answer.finish_reason == rag.answer.GENERATING:
        return f"**Answer** (generating… {answer.new_tokens} tokens, {answer.seconds:.1f} s):\n\n{quoted}"
    lines = [f"**Answer** ({answer.new_tokens} tokens, {answer.seconds:.1f} s, finish: {answer.finish_reason}):",
             "", quoted, ""]
    for passage in answer.passages:
        mark = "✅ cited" if passage.cited else "· not cited"
        lines.append(f"- **[{passage.number}]** {passage.source} · c{passage.chunk_index} (retrieval rank "
                     f"{passage.retrieval_rank}) {mark}")
    if answer.invalid_citations:
        lines.append(f"\n⚠️ Cites passages that do not exist: {list(answer.invalid_citations)}")
    if answer.says_unknown:
        lines.append("\nThe model said it does not know.")
    lines += [f"\n{PROBLEM_SENTENCES[problem]}" for problem in rag.answer_problems(answer)]
    lines += [f"\nℹ️ {note}" for note in answer.notes]
    return "\n".join(lines)


def evaluation_headers(ks: tuple[int, ...] = EVAL_KS) -> list[str]:
    return ["method"] + [f"recall@{k}" for k in ks] + ["MRR"] + [f"nDCG@{k}" for k in ks]


def evaluation_rows(report: rag.EvaluationReport) -> list[list[Any]]:
    return [[scores.method] + [round(scores.recall[k], 3) for k in report.ks] + [round(scores.mrr, 3)]
            + [round(scores.ndcg[k], 3) for k in report.ks] for scores in report.methods]


# ---------------------------------------------------------------------------------------------
# The tab
# ---------------------------------------------------------------------------------------------


class RagHandlers:
    """The tab's event handlers as plain methods (the tab wires them; tests call them): one per context, holding
    the built indexes and the LLM judge's cached relevance scores."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.store = rag.IndexStore()
        self.judgements = rag.JudgementCache()


    def get_index(self, source: str, files: list[str] | None, pasted: str | None, unit: str, size: float | None,
                  overlap: float | None, progress: ProgressFn) -> rag.RetrievalIndex:
        corpus = corpus_for(source, files, pasted, self.ctx.limits)
        chunking = chunking_for(unit, size, overlap)
        embedder = self.ctx.models.embedding_model(progress)
        return self.store.get_or_build(corpus, chunking, DEFAULT_EMBEDDING_MODEL, lambda: rag.build_index(
            corpus, chunking, embedder, DEFAULT_EMBEDDING_MODEL, self.ctx.settings.cache_dir, progress,
            limits=self.ctx.limits))

    def rerank_scores(self, question: str, passages: list[str], progress: ProgressFn = no_progress) -> list[float]:
        loaded = self.ctx.model()
        found = self.judgements.judge(model_key(loaded), question, passages, lambda missing: rag.judge_relevance(
            loaded.model, loaded.tokenizer, question, missing, lock=loaded.lock, progress=progress))
        return [judgement.score for judgement in found]

    def ranked(self, question: str, corpus_inputs: tuple, method: str, k: float, rerank_top: float,
               progress: ProgressFn) -> tuple[rag.RetrievalIndex, rag.Retrieval]:
        index = self.get_index(*corpus_inputs, progress)
        embedder = self.ctx.models.embedding_model()
        retrieval = rag.retrieve(index, embedder, question, method, int(k), int(rerank_top))
        if int(rerank_top) > 0:
            scores = self.rerank_scores(retrieval.question, [row.chunk.text for row in retrieval.candidates], progress)
            retrieval = rag.apply_rerank(retrieval, scores)
        return index, retrieval

    @user_errors
    def build(self, source: str, files: list[str] | None, pasted: str | None, unit: str, size: float | None,
              overlap: float | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        index = self.get_index(source, files, pasted, unit, size, overlap, reporter(progress))
        data = {**index.stats(), "chunk_list": [
            {"index": c.index, "source": c.source, "start": c.start, "end": c.end, "tokens": c.token_count}
            for c in index.chunks]}
        return (stats_markdown(index), chunks_table(index.chunk_set),
                figures.chunk_length_figure(index.chunk_set, index.embedder_window), data)

    @user_errors
    def index_stats(self, question: str, source: str, files: list[str] | None, pasted: str | None, unit: str,
                    size: float | None, overlap: float | None) -> Any:
        """The stats box after Retrieve / Answer built the index on demand ("Press Build index" was left there).
        Runs after they succeed, so the index is in the store (a cache hit, no build); an empty question built
        nothing, and nothing changes."""
        if not (question or "").strip():
            return gr.skip()
        return stats_markdown(self.get_index(source, files, pasted, unit, size, overlap, no_progress))

    def question_typed(self, question: str, summary: str, answer: str) -> tuple[Any, Any]:
        """The question box changed: the "Type a question above" / "Press Retrieve" messages follow it; a real
        retrieval or answer already shown is left alone."""
        waiting = (EMPTY_QUESTION, READY_QUESTION, EMPTY_ANSWER, READY_ANSWER)
        new_summary, new_answer = question_messages(question)
        return (new_summary if summary in waiting else gr.skip(), new_answer if answer in waiting else gr.skip())

    @user_errors
    def search(self, question: str, source: str, files: list[str] | None, pasted: str | None, unit: str,
               size: float | None, overlap: float | None, method: str, k: float, rerank_top: float, map_method: str,
               progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        if not (question or "").strip():
            empty = figures.empty_figure(EMPTY_QUESTION)
            return EMPTY_QUESTION, [], empty, empty, empty, {"empty": True, "message": EMPTY_QUESTION}
        index, retrieval = self.ranked(question, (source, files, pasted, unit, size, overlap), method, k, rerank_top,
                                  reporter(progress))
        projector = index.projector(map_method)
        data = {**retrieval.as_dict(), "corpus": index.stats()["corpus"]["name"], "map_method": projector.method}
        return (retrieval_markdown(retrieval), results_table(retrieval),
                figures.score_bars_figure(retrieval), figures.score_distribution_figure(retrieval),
                figures.embedding_map_figure(projector, index.chunks, retrieval), data)

    def grounded_stream(self, question: str, corpus_inputs: tuple, method: str, k: float, rerank_top: float,
                        strict: bool, position: str, max_new_tokens: float,
                        progress: ProgressFn) -> Iterator[rag.GroundedAnswer]:
        """Retrieve, then the answer token by token (rag.stream_answer); the last one is finished."""
        _, retrieval = self.ranked(question, corpus_inputs, method, k, rerank_top, progress)
        loaded = self.ctx.model()
        new_tokens = whole_number_in("max_new_tokens", max_new_tokens, 1, self.ctx.limits.rag_new_tokens)

        def stream(source: EngineTokenSource | None) -> Iterator[rag.GroundedAnswer]:
            return rag.stream_answer(loaded.model, loaded.tokenizer, retrieval.question,
                                     [row.chunk for row in retrieval.rows], strict, position, new_tokens,
                                     loaded.eos_token_ids, loaded.lock, source)

        # retrieval stays local either way; the engine answers in one request (materialized here, so that its
        # failure falls back to the local stream inside engine_or_local)
        yield from engine_or_local(self.ctx, lambda engine: list(stream(engine)), lambda: stream(None))

    def grounded(self, question: str, corpus_inputs: tuple, method: str, k: float, rerank_top: float, strict: bool,
                 position: str, max_new_tokens: float, progress: ProgressFn) -> rag.GroundedAnswer:
        *_, answer = self.grounded_stream(question, corpus_inputs, method, k, rerank_top, strict, position,
                                          max_new_tokens, progress)
        return answer

    @user_errors
    def answer(self, question: str, source: str, files: list[str] | None, pasted: str | None, unit: str,
               size: float | None, overlap: float | None, method: str, k: float, rerank_top: float, strict: bool,
               position: str, max_new_tokens: float,
               progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Any, ...]]:
        """Streams: the answer appears token by token (it sat behind a fixed "50%" bar for 12-24 s)."""
        if not (question or "").strip():
            yield "", EMPTY_ANSWER, {"empty": True, "message": EMPTY_ANSWER}
            return
        for result in self.grounded_stream(question, (source, files, pasted, unit, size, overlap), method, k,
                                           rerank_top, strict, position, max_new_tokens, reporter(progress)):
            yield result.prompt_text, answer_markdown(result), result.as_dict()

    @user_errors
    def compare_positions(self, question: str, source: str, files: list[str] | None, pasted: str | None, unit: str,
                          size: float | None, overlap: float | None, method: str, k: float, rerank_top: float,
                          strict: bool, max_new_tokens: float, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        if not (question or "").strip():
            return [], {"empty": True, "message": EMPTY_ANSWER}
        results = [self.grounded(question, (source, files, pasted, unit, size, overlap), method, k, rerank_top, strict,
                            position, max_new_tokens, reporter(progress)) for position in rag.POSITIONS]
        rows = [[r.position, next(p.number for p in r.passages if p.retrieval_rank == 1), r.answer,
                 ", ".join(f"[{n}]" for n in r.citations) or "-", "yes" if r.best_passage_cited else "no",
                 "yes" if r.says_unknown else "no"] for r in results]
        return rows, {"positions": [r.as_dict() for r in results]}

    @user_errors
    def evaluate(self, unit: str, size: float | None, overlap: float | None, rerank_top: float,
                 progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        index = self.get_index(CORPUS_CHOICES[0], None, None, unit, size, overlap, reporter(progress))
        embedder = self.ctx.models.embedding_model()
        report = rag.evaluate_index(index, embedder, rerank=self.rerank_scores if int(rerank_top) > 0 else None,
                                    rerank_candidates=int(rerank_top),
                                    progress=reporter(progress))
        return evaluation_rows(report), figures.evaluation_figure(report), report.as_dict()

    @user_errors
    def choose_corpus(self, source: str, files: list[str] | None, pasted: str | None) -> tuple[Any, ...]:
        """The corpus was picked: the Python reference with the default chunks, or the visitor's text with chunk
        sizes that cut it into a useful number of chunks (rag.chunking.suggested_chunking), saying what was chosen.
        Outputs: source, unit, size, overlap, the stats box."""
        if source == CORPUS_CHOICES[0]:
            default = rag.ChunkingSettings()
            return (source, default.unit, default.size, default.overlap,
                    f"Using the **{PYTHON_REFERENCE}** with chunks of {default.describe()}.")
        if not ((pasted or "").strip() or files):
            return (source, gr.skip(), gr.skip(), gr.skip(),
                    "Paste some text or drop files above to use your own corpus.")
        corpus = corpus_for(CORPUS_CHOICES[1], files, pasted, self.ctx.limits)
        chosen = suggested_chunking([len(document.text) for document in corpus.documents])
        return source, chosen.unit, chosen.size, chosen.overlap, chunking_note(corpus, chosen)

    def use_own_corpus(self, files: list[str] | None, pasted: str | None) -> tuple[Any, ...]:
        """Text pasted or files dropped: that is the corpus now (retrieval ran on the Python reference before)."""
        return self.choose_corpus(CORPUS_CHOICES[1], files, pasted)

    def check_uploads(self, files: list[str] | None) -> list[str]:
        """Keep the files that read as a corpus; say why the others were dropped (the corpus in use is untouched)."""
        kept, budget = [], PdfBudget(self.ctx.limits)  # one PDF budget for the whole upload
        for path in files or []:
            try:
                read_document(path, self.ctx.limits, budget)
                kept.append(path)
            except (rag.CorpusError, OSError) as error:
                gr.Warning(str(error))
        return kept


def create_rag_tab(ctx: AppContext) -> dict[str, Any]:
    handlers = RagHandlers(ctx)
    explanation(EXPLANATION)
    with gr.Row():
        with gr.Column(scale=3):
            source = gr.Radio(CORPUS_CHOICES, value=CORPUS_CHOICES[0], label="Corpus")
            files = gr.File(label=f"Your files ({', '.join(ALLOWED_SUFFIXES)}; 5 MB each, 20 MB in all)",
                            file_count="multiple", file_types=list(ALLOWED_SUFFIXES), type="filepath",
                            height=110, elem_id="rag-files")
            pasted = gr.Textbox(label="…or paste text", lines=3, max_lines=8,
                                placeholder="Paste text here: the corpus switches to it, with chunk sizes that suit it.")
        with gr.Column(scale=2):
            unit = gr.Dropdown(list(rag.CHUNK_UNITS), value="characters", label="Chunk by")
            with gr.Row():
                size = gr.Number(800, label="Chunk size (in units)", precision=0, minimum=1)
                overlap = gr.Number(100, label="Overlap (in units)", precision=0, minimum=0)
            build_button = gr.Button("Build index", variant="secondary")
    stats = gr.Markdown(NO_INDEX, elem_id="rag-stats")
    with gr.Accordion("Chunks", open=False):
        with gr.Row():
            chunk_table = gr.Dataframe(interactive=False, headers=CHUNK_HEADERS, column_widths=CHUNK_WIDTHS, wrap=True, max_height=360,
                                       elem_id="rag-chunks", scale=3)
            length_plot = gr.Plot(label="Chunk lengths", elem_id="rag-lengths", scale=2)
        index_json = gr.JSON(label="rag_index", open=False)

    examples = [q.question for q in load_questions()[:6]]
    with gr.Row():
        with gr.Column(scale=3):
            question = gr.Textbox(examples[1], label="Question", lines=2, max_lines=4, elem_id="rag-question")
            gr.Examples([[q] for q in examples], [question], label="Questions from the evaluation set")
        with gr.Column(scale=2):
            method = gr.Radio(list(rag.METHODS), value="hybrid", label="Retrieval method")
            k = gr.Slider(1, rag.MAX_K, value=5, step=1, label="Top k")
            rerank_top = gr.Slider(0, rag.MAX_RERANK, value=0, step=1,
                                   label="Rerank the top N with the LLM (0 = off; at least k)")
            map_method = gr.Dropdown(list(rag.available_projections()), value="pca", label="2D map")
            search_button = gr.Button("Retrieve", variant="primary")
    first_summary, first_answer = question_messages(question.value)
    summary = gr.Markdown(first_summary, elem_id="rag-summary")
    results = gr.Dataframe(interactive=False, headers=TABLE_HEADERS, column_widths=TABLE_WIDTHS, wrap=True, elem_id="rag-results")
    bars = gr.Plot(label="Scores of the retrieved chunks", elem_id="rag-bars")
    distribution = gr.Plot(label="Score distributions", elem_id="rag-distribution")
    embedding_map = gr.Plot(label="Embedding map", elem_id="rag-map")
    with gr.Accordion("retrieve JSON (every score)", open=False):
        retrieve_json = gr.JSON(label="retrieve")

    gr.Markdown(ANSWER_EXPLANATION)
    with gr.Row():
        strict = gr.Checkbox(True, label="Answer only from the context, else say \"I don't know\"")
        position = gr.Radio(list(rag.POSITIONS), value="first", label="Place the best chunk")
        max_new_tokens = gr.Slider(1, ctx.limits.rag_new_tokens, value=96, step=1, label="Max new tokens")
    with gr.Row():
        answer_button = gr.Button("Answer", variant="primary")
        compare_button = gr.Button("Compare first / middle / last")
    answer_text = gr.Markdown(first_answer, elem_id="rag-answer")
    prompt_text = gr.Textbox(label="The prompt actually sent (chat template included)", lines=8, max_lines=24,
                             interactive=False, elem_id="rag-prompt")
    positions_table = gr.Dataframe(interactive=False, headers=POSITION_HEADERS, column_widths=POSITION_WIDTHS, wrap=True,
                                   label="Lost in the middle", elem_id="rag-positions")
    with gr.Accordion("rag_answer JSON", open=False):
        answer_json = gr.JSON(label="rag_answer")
        positions_json = gr.JSON(label="rag_positions")

    gr.Markdown(EVALUATION_EXPLANATION.format(count=len(load_questions())))
    with gr.Row():
        eval_rerank = gr.Slider(0, rag.MAX_RERANK, value=0, step=1,
                                label="Also rerank the hybrid top N with the LLM (0 = off; slow: N forwards per question)")
        eval_button = gr.Button("Evaluate retrieval", variant="primary")
    eval_table = gr.Dataframe(interactive=False, headers=evaluation_headers(), wrap=True, elem_id="rag-eval")
    eval_plot = gr.Plot(label="Evaluation", elem_id="rag-eval-plot")
    with gr.Accordion("rag_evaluate JSON", open=False):
        eval_json = gr.JSON(label="rag_evaluate")

    corpus_inputs = [source, files, pasted, unit, size, overlap]
    retrieval_inputs = [question, *corpus_inputs, method, k, rerank_top]
    build_button.click(handlers.build, corpus_inputs, [stats, chunk_table, length_plot, index_json],
                       api_name="rag_index")
    search_outputs = [summary, results, bars, distribution, embedding_map, retrieve_json]
    # One bound method for both events: gradio groups concurrency by id(fn), and `handlers.search` makes a new
    # object at each access, so this keeps the button and Enter in one concurrency group.
    search = handlers.search
    # Retrieve, Answer and Compare build the index on demand: then the stats box shows it (it said "Press Build
    # index" after the index was built); one bound method for all (gradio groups concurrency by id(fn))
    index_stats = handlers.index_stats

    def show_index(event: Any) -> None:
        event.success(index_stats, [question, *corpus_inputs], stats, api_visibility="private", show_progress="hidden")

    show_index(search_button.click(search, retrieval_inputs + [map_method], search_outputs, api_name="retrieve"))
    show_index(question.submit(search, retrieval_inputs + [map_method], search_outputs, api_visibility="private"))
    show_index(answer_button.click(handlers.answer, retrieval_inputs + [strict, position, max_new_tokens],
                                   [prompt_text, answer_text, answer_json], api_name="rag_answer"))
    show_index(compare_button.click(handlers.compare_positions, retrieval_inputs + [strict, max_new_tokens],
                                    [positions_table, positions_json], api_name="rag_positions"))
    question.change(handlers.question_typed, [question, summary, answer_text], [summary, answer_text],
                    api_visibility="private", queue=False, show_progress="hidden")
    eval_button.click(handlers.evaluate, [unit, size, overlap, eval_rerank], [eval_table, eval_plot, eval_json],
                      api_name="rag_evaluate")
    corpus_outputs = [source, unit, size, overlap, stats]
    source.input(handlers.choose_corpus, [source, files, pasted], corpus_outputs, api_name="rag_choose_corpus",
                 show_progress="hidden")
    # one bound method for both events (gradio groups concurrency by id(fn))
    use_own_corpus = handlers.use_own_corpus
    # `change`, not `input`: gradio's textbox fires no `input` on a paste (nothing else sets this box)
    pasted.change(use_own_corpus, [files, pasted], corpus_outputs, api_visibility="private",
                  trigger_mode="always_last", show_progress="hidden")
    files.upload(handlers.check_uploads, files, files, api_name="rag_check_uploads", api_visibility="private").then(
        use_own_corpus, [files, pasted], corpus_outputs, api_visibility="private", show_progress="hidden")
    files.clear(use_own_corpus, [files, pasted], corpus_outputs, api_visibility="private", show_progress="hidden")
    return {"source": source, "files": files, "pasted": pasted, "unit": unit, "size": size, "overlap": overlap,
            "build": build_button, "stats": stats, "chunk_table": chunk_table, "length_plot": length_plot,
            "index_json": index_json, "question": question, "method": method, "k": k, "rerank_top": rerank_top,
            "map_method": map_method, "search": search_button, "summary": summary, "results": results,
            "bars": bars, "distribution": distribution, "embedding_map": embedding_map,
            "retrieve_json": retrieve_json, "strict": strict, "position": position,
            "max_new_tokens": max_new_tokens, "answer": answer_button, "compare": compare_button,
            "answer_text": answer_text, "prompt_text": prompt_text, "positions_table": positions_table,
            "answer_json": answer_json, "positions_json": positions_json, "eval_rerank": eval_rerank,
            "evaluate": eval_button, "eval_table": eval_table, "eval_plot": eval_plot, "eval_json": eval_json}
