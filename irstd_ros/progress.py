"""Progress bars for the long commands: shown on a terminal, silent when the output is piped or logged."""
from __future__ import annotations

import sys
from typing import Iterable, Optional

from tqdm import tqdm


def on_terminal() -> bool:
    return sys.stderr.isatty()


def progress(iterable: Optional[Iterable] = None, total: Optional[int] = None, desc: str = "", **kwargs) -> tqdm:
    """``tqdm`` on stderr when it is a terminal, otherwise a pass-through that prints nothing."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, total=total, desc=desc, disable=not on_terminal(), dynamic_ncols=True, **kwargs)
