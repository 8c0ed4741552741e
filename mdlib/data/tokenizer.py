"""A WordPiece tokenizer trained locally (no download), wrapped for transformers.

The vocabulary is learnt as 🤗 tokenizers' `WordPieceTrainer` learns it (byte-pair merges over the
training words, "##" marking a piece that continues a word), but by `wordpiece_vocabulary`, which
breaks ties between equally frequent merges in a fixed order. The trainer of `tokenizers` breaks them
by ids it gives the "##" pieces in hash-map order, which changes from process to process
(huggingface/tokenizers#1794): trained twice on the same texts it gave different vocabularies, hence
different token ids, models and numbers, on every fresh machine or empty data folder. Encoding is
`tokenizers`' own WordPiece model.
"""
from __future__ import annotations

import heapq
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

from ..utils import CacheError, file_mode

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PREFIX = "##"
# Written beside a saved tokenizer; a cached tokenizer without it came from the order-dependent trainer.
VOCABULARY_MARK = ("vocabulary.txt", "wordpiece merges, ties in a fixed order\n")


def _pipeline():
    """The normaliser and pre-tokeniser of a lower-case BERT tokenizer."""
    from tokenizers import normalizers, pre_tokenizers

    return normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()


def wordpiece_vocabulary(texts: Iterable[str], vocab_size: int = 1000) -> dict[str, int]:
    """token -> id: the special tokens, every character, every "##"-continuing character, then merged
    pieces, most frequent pair first, until `vocab_size` tokens (or no pair is left).

    These are the merges of `tokenizers`' WordPiece trainer (byte-pair encoding over the words, each
    counted as often as it occurs, `min_frequency=1`), with its tie-break: of equally frequent pairs,
    the one whose pieces have the smaller ids. That trainer numbers the "##" characters in hash-map
    order; here they are numbered in text order, so the same texts always give the same vocabulary."""
    normaliser, pre_tokeniser = _pipeline()
    words = Counter(w for t in texts for w, _ in pre_tokeniser.pre_tokenize_str(normaliser.normalize_str(t)))
    spelled = sorted(words)
    pieces = [[w[0]] + [PREFIX + c for c in w[1:]] for w in spelled]  # each distinct word, as pieces
    counts = [words[w] for w in spelled]
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for token in [*sorted({c for w in spelled for c in w}), *sorted({p for ps in pieces for p in ps[1:]})]:
        vocab.setdefault(token, len(vocab))

    pair_count: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)  # words that hold (or held) the pair
    for i, ps in enumerate(pieces):
        for pair in zip(ps, ps[1:]):
            pair_count[pair] += counts[i]
            where[pair].add(i)

    def entry(pair):  # heap order: highest count, then smallest ids
        return -pair_count[pair], vocab[pair[0]], vocab[pair[1]], pair

    heap = [entry(pair) for pair in pair_count]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        neg, _, _, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:
            continue  # a stale entry: this pair's count has changed since it was pushed
        a, b = pair
        merged = a + b[len(PREFIX):]
        vocab.setdefault(merged, len(vocab))
        touched = set()
        for i in sorted(where.pop(pair)):
            ps = pieces[i]
            for old in zip(ps, ps[1:]):
                pair_count[old] -= counts[i]
                touched.add(old)
            pieces[i] = out = _merge(ps, a, b, merged)
            for new in zip(out, out[1:]):
                pair_count[new] += counts[i]
                where[new].add(i)
                touched.add(new)
        for p in sorted(touched):
            if pair_count[p] > 0:
                heapq.heappush(heap, entry(p))
            else:
                pair_count.pop(p, None)
                where.pop(p, None)
    return vocab


def _merge(pieces: list[str], a: str, b: str, merged: str) -> list[str]:
    """`pieces` with every adjacent (a, b), read left to right, replaced by `merged`."""
    out, k = [], 0
    while k < len(pieces):
        if k + 1 < len(pieces) and pieces[k] == a and pieces[k + 1] == b:
            out.append(merged)
            k += 2
        else:
            out.append(pieces[k])
            k += 1
    return out


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1000, path: str | Path | None = None):
    """Train a lower-case WordPiece tokenizer on `texts`; return a `PreTrainedTokenizerFast`.

    The result pads with [PAD] (id 0), starts each text with [CLS] and ends it with [SEP],
    exactly like a BERT tokenizer, so the same code path serves a pretrained BERT tokenizer.
    The same texts give the same tokenizer in every process (`wordpiece_vocabulary`).
    """
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = wordpiece_vocabulary(texts, vocab_size)
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix=PREFIX))
    tok.normalizer, tok.pre_tokenizer = _pipeline()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    if path is not None:
        save_atomically(fast, path)
    return fast


def save_atomically(tokenizer, path: str | Path) -> Path:
    """`save_pretrained` (and `VOCABULARY_MARK`) into a private folder, then move each file into `path`
    with `tokenizer.json` last.

    `tokenizer.json` marks a complete cache, so an interrupted save never leaves a half-written one.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        tokenizer.save_pretrained(str(tmp))
        (tmp / VOCABULARY_MARK[0]).write_text(VOCABULARY_MARK[1])
        for name in sorted((p.name for p in tmp.iterdir()), key=lambda n: (n == "tokenizer.json", n)):
            os.chmod(tmp / name, file_mode())
            os.replace(tmp / name, path / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def cached_tokenizer(texts: Iterable[str], path: str | Path, vocab_size: int = 1000):
    """Load the tokenizer saved at `path`, or train it on `texts` and save it there (also when the saved
    one was trained by an earlier, order-dependent version: see the module's docstring)."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    mark = path / VOCABULARY_MARK[0]
    if (path / "tokenizer.json").exists() and mark.exists() and mark.read_text() == VOCABULARY_MARK[1]:
        try:
            return PreTrainedTokenizerFast.from_pretrained(str(path))
        except Exception as e:  # a truncated or foreign file: say which and how to rebuild it
            raise CacheError(f"the cached tokenizer at {path} is unreadable ({type(e).__name__}: {e}); "
                             f"delete that folder and run again to rebuild it") from e
    return train_tokenizer(texts, vocab_size, path=path)
