"""Hypothesis strategies the dialects' fuzz runs share."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(*, text: int = 12, size: int = 3, keys: int = 8, leaves: int = 10) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars (integers beyond 64 bits included) nested in small lists and objects."""
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=text),
        lambda inner: (
            st.lists(inner, max_size=size) | st.dictionaries(st.text(max_size=keys), inner, max_size=size)
        ),
        max_leaves=leaves,
    )
