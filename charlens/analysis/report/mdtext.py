"""Text from users (checkpoint names, file names, sentences, counterfactual texts) inside report.md:
escaped so that a markdown viewer shows it as written and never renders it as HTML or markup."""
from __future__ import annotations

import html
import re

MARKDOWN_SPECIALS = re.compile(r"([\\`*\[\]|])")  # markup that can start a link, emphasis, code or a table cell


def md_escape(text: str) -> str:
    """Prose: HTML entities for <, > and & (no raw HTML; quotes outside a tag are plain text and stay as written),
    and a backslash before the markup characters that could turn text into a link, emphasis, code or a table cell
    (intraword _ and . stay readable)."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(str(text), quote=False)).replace("\n", " ")


def md_code(text: str) -> str:
    """A code span holding `text` verbatim (code spans render no HTML); its fence is longer than any
    run of backticks inside, and table pipes are escaped."""
    text = str(text).replace("\n", " ").replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}" if text.startswith("`") or text.endswith("`") else f"{fence}{text}{fence}"
