"""Can an auditor read the demonstrations? Three measures per policy's completions.

- markup debris: the share of completions with HTML entities or tags ("&#8230;", "&amp", "<br>"),
  which SFT on raw tweets teaches and which the ground truth may score as cleaner;
- unknown words: the share of words (letters only, lower-cased) in none of the English word
  lists of the ``english-words`` package (web2 and GCIDE), after stripping a plural or verb
  ending: slang counts as unknown too, so compare policies with each other, not with zero;
- perplexity of the completion, given its prompt, under the base model (the policies' backbone
  without adapters): fluent English scores low.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from core import policy
from core.implicit_reward import log_probs_by_length, prompt_ids
from core.run_store import Run
from core.text_sets import has_markup_debris

STAGE = "readability"
TABLE = "readability"
LETTERS = re.compile(r"[a-z]+")
ENDINGS = ("s", "es", "ed", "ing", "ly", "'s")


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    from english_words import get_english_words_set

    return frozenset(get_english_words_set(["web2", "gcide"], lower=True))


def known(word: str, words: frozenset[str]) -> bool:
    return word in words or any(word.endswith(e) and word[: -len(e)] in words for e in ENDINGS)


def unknown_word_share(texts: Sequence[str]) -> float:
    """Share of all the texts' words that no word list knows."""
    words = english_words()
    tokens = [w for t in texts for w in LETTERS.findall(str(t).lower())]
    return float(np.mean([not known(w, words) for w in tokens])) if tokens else 0.0


def perplexity(model, tokenizer, prompts: Sequence[str], completions: Sequence[str], *,
               chat_template: bool = False, batch_size: int = 16, progress: bool = False) -> float:  # fmt: skip
    """exp of the mean negative log-likelihood of the completions' tokens, given their prompts."""
    sequences, starts = [], []
    for prompt, completion in zip(prompts, completions, strict=True):
        head = prompt_ids(tokenizer, prompt, chat_template)
        ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if ids:
            sequences.append(head + ids)
            starts.append(len(head))
    logp = log_probs_by_length(model, tokenizer, sequences, starts, batch_size=batch_size, progress=progress,
                               desc="perplexity")  # fmt: skip
    total, count = -float(sum(t.sum() for t in logp)), sum(len(t) for t in logp)
    return float(np.exp(total / count)) if count else float("nan")


def measure(frame: pd.DataFrame, model=None, tokenizer=None, *, chat_template: bool = False,
            progress: bool = False) -> pd.DataFrame:  # fmt: skip
    """One row per policy: n, markup_debris, unknown_words, perplexity (NaN without a model)."""
    rows = []
    for name, part in frame.groupby("policy", sort=False):
        completions = part["completion"].astype(str).tolist()
        ppl = (perplexity(model, tokenizer, part["prompt"].astype(str).tolist(), completions,
                          chat_template=chat_template, progress=progress)
               if model is not None else float("nan"))  # fmt: skip
        rows.append({"policy": str(name), "n": len(part),
                     "markup_debris": float(np.mean(has_markup_debris(completions))),
                     "unknown_words": unknown_word_share(completions), "perplexity": ppl})  # fmt: skip
    return pd.DataFrame(rows)


def readability_stage(run: Run, *, base_model: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Readability of every policy's demonstrations; perplexity under the policies' base model."""
    demos = run.read_table("demonstrations")
    base = base_model or run.manifest.models.get("pi0")
    with run.stage(STAGE, {"base_model": base}, resumable=False) as record:
        model = tokenizer = None
        if base:
            tokenizer = policy.load_tokenizer(base, padding_side="right")
            model = policy.load_causal_lm(base)
        chat = bool(run.manifest.config.get("sample", {}).get("chat_template", False))
        table = measure(demos, model, tokenizer, chat_template=chat, progress=progress)
        run.write_table(TABLE, table)
        record.summary = {"readability": table.to_dict("records"), "readability_base_model": base}
    return table
