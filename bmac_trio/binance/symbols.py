"""Symbol names that are safe to use as file names.

Binance symbols are upper-case letters and digits, with ``_`` in delivery contracts
(``BTCUSD_210924``) and, lately, non-ASCII letters (a UM perpetual has been listed with Chinese
characters). Anything that could name a different file — separators, ``..``, a leading dot,
control characters — is refused before it reaches the disk.
"""

from __future__ import annotations

import unicodedata

from bmac_trio.errors import UnsafeSymbol

__all__ = ["MAX_SYMBOL_LENGTH", "check_symbol", "is_safe_symbol"]

MAX_SYMBOL_LENGTH = 64
_ALLOWED_PUNCTUATION = frozenset("_-")


def is_safe_symbol(symbol: object) -> bool:
    """True when ``symbol`` is a non-empty name of letters, digits, ``_`` and ``-`` only."""
    if not isinstance(symbol, str) or not 0 < len(symbol) <= MAX_SYMBOL_LENGTH:
        return False
    if symbol[0] in _ALLOWED_PUNCTUATION:
        return False
    for char in symbol:
        if char in _ALLOWED_PUNCTUATION:
            continue
        category = unicodedata.category(char)
        if not (category.startswith("L") or category == "Nd"):
            return False
    return True


def check_symbol(symbol: object) -> str:
    """Return ``symbol`` if it is safe as a file name.

    Raises:
        UnsafeSymbol: the name could escape or confuse the data directory.
    """
    if not is_safe_symbol(symbol):
        msg = (
            f"refusing symbol name {symbol!r}: a symbol must be 1-{MAX_SYMBOL_LENGTH} letters, "
            "digits, '_' or '-', so that it cannot name a file outside the data directory"
        )
        raise UnsafeSymbol(msg)
    assert isinstance(symbol, str)
    return symbol
