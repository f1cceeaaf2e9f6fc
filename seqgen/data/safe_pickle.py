"""Pickled datasets read without executing code from the data.

CIFAR's batches and Planetoid's ``ind.<name>.*`` files are Python pickles. ``pickle.load`` on a
file from the network can run any code (a pickle may name any callable); :func:`restricted_load`
lets a pickle build only the classes listed for that format and refuses anything else with a
:class:`DataError` naming what was asked for. ``substitutes`` maps a class the format names (such
as ``scipy.sparse.csr_matrix``) to a plain stand-in that only stores the pickled state, so reading
a file needs neither that library nor trust in its constructors.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from seqgen.errors import DataError

# numpy arrays as the numpy pickles of any version write them
NUMPY_ARRAYS = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                          ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})


def restricted_load(path: str | Path, allowed: frozenset[tuple[str, str]] | set[tuple[str, str]],
                    substitutes: dict[tuple[str, str], Any] | None = None, encoding: str = "bytes",
                    what: str = "pickle") -> Any:
    """Unpickle ``path``, letting it build only ``allowed`` (module, name) pairs and the
    ``substitutes`` (their stand-ins are returned in place of the named class). Names are matched
    as the pickle writes them (Python 2 pickles say ``copy_reg`` and ``__builtin__``)."""
    path = Path(path)
    subs = dict(substitutes or {})

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in subs:
                return subs[(module, name)]
            if (module, name) not in allowed:
                raise DataError(f"{path}: the pickle asks for {module}.{name}, which is not allowed in a {what}; "
                                "refusing to load it")
            return super().find_class(module, name)

    try:
        with open(path, "rb") as f:
            return Restricted(f, encoding=encoding).load()
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: not a readable {what} ({type(e).__name__}: {e})") from e
