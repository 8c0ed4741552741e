"""The WordPiece tokenizer: the same texts give the same vocabulary in every process; its layout, size and
order of merges. (That it learns what `tokenizers`' own trainer learns, up to how ties are broken, was
measured on the embedded tasks' texts, the same tokens for 98-100% of them, and is not tested here: that
trainer is itself not deterministic.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np

from mdlib.data.tokenizer import SPECIAL_TOKENS, VOCABULARY_MARK, cached_tokenizer, train_tokenizer, wordpiece_vocabulary

# Words with Zipf-like frequencies (the most frequent first), eight to a text.
WORDS = ["the", "red", "blue", "green", "yellow", "circle", "square", "triangle", "left", "right", "above", "below",
         "cyan", "star", "cross", "photographed", "by", "ana", "bo", "magenta", "hexagon", "between", "beside"]
_rng = np.random.default_rng(0)
_p = 1 / np.arange(1, len(WORDS) + 1)
TEXTS = [" ".join(_rng.choice(WORDS, size=8, p=_p / _p.sum())) for _ in range(400)]


def _in_a_new_process(hash_seed: str) -> dict:
    code = ("import json, sys; from mdlib.data.tokenizer import wordpiece_vocabulary; "
            "print(json.dumps(wordpiece_vocabulary(json.loads(sys.stdin.read()), 120)))")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(TEXTS), capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONHASHSEED": hash_seed})
    return json.loads(out.stdout)


def test_same_texts_same_vocabulary_in_every_process():
    here = wordpiece_vocabulary(TEXTS, 120)
    assert wordpiece_vocabulary(TEXTS, 120) == here
    assert _in_a_new_process("1") == here and _in_a_new_process("2") == here


def test_vocabulary_layout_and_size():
    vocab = wordpiece_vocabulary(TEXTS, 100)
    assert len(vocab) == 100 and sorted(vocab.values()) == list(range(100))
    assert [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])][:5] == SPECIAL_TOKENS
    # every character is a token, alone and as a continuation, so no training word is unknown
    chars = {c for w in WORDS for c in w}
    assert chars <= set(vocab) and {"##" + c for w in WORDS for c in w[1:]} <= set(vocab)
    # with room for every merge, each training word becomes one token, and the merging stops by itself
    everything = wordpiece_vocabulary(TEXTS, 10_000)
    assert set(WORDS) <= set(everything) and len(everything) < 10_000
    assert train_tokenizer(TEXTS, 10_000).tokenize("The yellow triangle, photographed by Ana") == \
        ["the", "yellow", "triangle", "[UNK]", "photographed", "by", "ana"]  # "," never occurs in TEXTS


def test_frequent_words_are_merged_first():
    """In a small vocabulary the whole words are the most frequent ones."""
    count = Counter(w for t in TEXTS for w in t.split())
    for size in (60, 80, 100):
        vocab = wordpiece_vocabulary(TEXTS, size)
        whole, split = [w for w in WORDS if w in vocab], [w for w in WORDS if w not in vocab]
        assert whole and split and min(count[w] for w in whole) > max(count[w] for w in split)


def test_a_cache_from_the_order_dependent_trainer_is_rebuilt(tmp_path):
    first = cached_tokenizer(TEXTS, tmp_path / "tok", vocab_size=120)
    assert (tmp_path / "tok" / VOCABULARY_MARK[0]).read_text() == VOCABULARY_MARK[1]
    assert cached_tokenizer(["unrelated words"], tmp_path / "tok").get_vocab() == first.get_vocab()  # loaded
    (tmp_path / "tok" / VOCABULARY_MARK[0]).unlink()  # as an earlier version saved it
    rebuilt = cached_tokenizer(["unrelated words"], tmp_path / "tok", vocab_size=120)
    assert "unrelated" in rebuilt.get_vocab() and "yellow" not in rebuilt.get_vocab()
    assert (tmp_path / "tok" / VOCABULARY_MARK[0]).exists()
