"""httpx, loaded when the pack first really uses it rather than when a module imports it.

Importing httpx costs about 80 ms (it pulls in its command line's click, rich and pygments where
those are installed), which is a quarter of a `flux-flex` run answered from the result cache: no
request is sent, so nothing of httpx is needed. The modules that talk HTTP import `httpx` from
here; the real module loads on the first attribute looked up (Python's documented lazy-import
recipe, https://docs.python.org/3/library/importlib.html#implementing-lazy-imports). Annotations
stay unevaluated (every module uses `from __future__ import annotations`), and module-level
constants of httpx types are built on first use.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def _lazy_module(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


httpx = _lazy_module("httpx")
