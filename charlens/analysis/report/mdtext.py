"""Text from users (checkpoint names, file names, sentences, counterfactual texts) inside report.md and on the
console: escaped so that a markdown viewer shows it as written and never renders it as HTML or markup, in
every markdown context (prose, table cells, code spans, link text and link targets), and with the control
characters that could make it read as something else (line breaks, terminal escapes, bidi overrides and
isolates such as U+202E) shown as <U+XXXX> instead of acting."""
from __future__ import annotations

import html
import re
from urllib.parse import quote

from charlens.data.errors import visible

MARKDOWN_SPECIALS = re.compile(r"([\\`*\[\]|])")  # markup that can start a link, emphasis, code or a table cell


def md_escape(text: str) -> str:
    """Prose: HTML entities for <, > and & (no raw HTML; quotes outside a tag are plain text and stay as written),
    and a backslash before the markup characters that could turn text into a link, emphasis, code or a table cell
    (intraword _ and . stay readable); line breaks become spaces, other controls <U+XXXX>."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(visible(str(text).replace("\n", " ")), quote=False))


def md_code(text: str) -> str:
    """A code span holding `text` verbatim (code spans render no HTML); its fence is longer than any
    run of backticks inside, table pipes are escaped, and controls are shown as <U+XXXX>."""
    text = visible(str(text).replace("\n", " ")).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}" if text.startswith("`") or text.endswith("`") else f"{fence}{text}{fence}"


def md_link(text: str, target: str, image: bool = False) -> str:
    """A link (or image) whose text is escaped prose and whose target is percent-encoded (no character of it
    can end the link or start HTML)."""
    return f"{'!' if image else ''}[{md_escape(text)}]({quote(str(target), safe='/')})"
