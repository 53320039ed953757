"""The gunicorn config file of ``ingest.py --commits``' servers: a revision's server imports
only that revision's ``receiver``, and says where every ``receiver`` module came from.

An editable install of this checkout (``pip install -e``) puts a finder on ``sys.meta_path``
that maps every ``receiver.*`` name to this checkout, whatever the package's ``__path__``: a
revision lacking a module would get today's. This file, loaded by the gunicorn master before
any app is imported, drops those finders, so such a module is an ImportError there. Each
worker then writes ``{module: file}`` of the ``receiver`` modules it loaded to
``$BENCH_RECEIVER_ORIGIN.<pid>`` once its app is loaded, and again as it exits (modules
imported while serving). It sets no server setting.

    gunicorn --config benchmarks/revision_conf.py ... 'receiver:create_app()'
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _editable(finder: Any) -> bool:
    module = getattr(finder, "__module__", None) or type(finder).__module__
    return str(module).startswith("__editable__")


sys.meta_path[:] = [finder for finder in sys.meta_path if not _editable(finder)]
sys.path_hooks[:] = [hook for hook in sys.path_hooks if not _editable(hook)]
sys.path_importer_cache.clear()


def _report() -> None:
    target = os.environ.get("BENCH_RECEIVER_ORIGIN")
    if not target:
        return
    files = {name: str(getattr(module, "__file__", None)
                       or next(iter(getattr(module, "__path__", None) or []), ""))
             for name, module in list(sys.modules.items())
             if name == "receiver" or name.startswith("receiver.")}
    with open(f"{target}.{os.getpid()}", "w") as handle:
        json.dump(files, handle)


def post_worker_init(worker: Any) -> None:
    _report()


def worker_exit(server: Any, worker: Any) -> None:
    _report()
