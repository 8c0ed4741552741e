"""A WordPiece tokenizer trained locally with `tokenizers` (no download), wrapped for transformers."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from ..utils import CacheError, file_mode

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1000, path: str | Path | None = None):
    """Train a lower-case WordPiece tokenizer on `texts`; return a `PreTrainedTokenizerFast`.

    The result pads with [PAD] (id 0), starts each text with [CLS] and ends it with [SEP],
    exactly like a BERT tokenizer, so the same code path serves a pretrained BERT tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=1)
    tok.train_from_iterator(list(texts), trainer)
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
    """`save_pretrained` into a private folder, then move each file into `path` with `tokenizer.json` last.

    `tokenizer.json` marks a complete cache, so an interrupted save never leaves a half-written one.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        tokenizer.save_pretrained(str(tmp))
        for name in sorted((p.name for p in tmp.iterdir()), key=lambda n: (n == "tokenizer.json", n)):
            os.chmod(tmp / name, file_mode())
            os.replace(tmp / name, path / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def cached_tokenizer(texts: Iterable[str], path: str | Path, vocab_size: int = 1000):
    """Load the tokenizer saved at `path`, or train it on `texts` and save it there."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    if (path / "tokenizer.json").exists():
        try:
            return PreTrainedTokenizerFast.from_pretrained(str(path))
        except Exception as e:  # a truncated or foreign file: say which and how to rebuild it
            raise CacheError(f"the cached tokenizer at {path} is unreadable ({type(e).__name__}: {e}); "
                             f"delete that folder and run again to rebuild it") from e
    return train_tokenizer(texts, vocab_size, path=path)
