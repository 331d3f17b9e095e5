"""The extras' report sections: the highlighted-text HTML of token importance."""
import pytest

from charlens.analysis.report.extras import highlighted_html


def test_highlighted_html():
    out = highlighted_html("a <b", [0.0, 1.0, 0.5, 0.25], rtl=True)
    assert 'dir="rtl"' in out and "&lt;" in out and "rgba(220, 60, 30, 0.500)" in out and "&nbsp;" in out
    with pytest.raises(ValueError):
        highlighted_html("ab", [1.0])
