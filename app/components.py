"""Drawing helpers shared by pages. Every piece of user or model text is HTML-escaped here."""

from __future__ import annotations

import re

from core.rendering import attribution_rows, word_heatmap_html

__all__ = ["attribution_rows", "plain", "word_heatmap_html"]

_MARKDOWN = re.compile(r"([\\`*_\[\]()#!|<>~$:])")


def plain(text) -> str:
    """Text from a run or a user, safe inside Markdown-rendering calls (st.markdown, st.caption,
    st.error, ...): every Markdown and HTML character is backslash-escaped, so a crafted run name,
    error or objective word shows as typed and fetches nothing."""
    return _MARKDOWN.sub(r"\\\1", str(text))
