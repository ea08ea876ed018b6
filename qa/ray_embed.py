"""Embedding on a Ray cluster (or a local Ray runtime): ``qa index --ray [ADDRESS]``.

Embedding is the wall a large corpus hits first (7.7 passages/s on two cores). Ray
Data's ``map_batches`` over a pool of actors, each holding the model loaded once,
is the standard way to spread it over many machines. The driver (``qa index``)
still reads and chunks the documents and writes the index; only the texts to embed
travel to the actors, and their vectors come back tagged with their positions, so
the caller journals each batch as it arrives and places it where it belongs,
whatever order Ray finishes the batches in.

Ray is an optional dependency (``pip install 'qa[ray]'``), imported only here and
only when ``--ray`` is asked for.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
from typing import Callable, Iterator, Sequence

import numpy as np

INSTALL_HINT = "qa index --ray needs Ray, which is not installed: pip install 'qa[ray]'"
LOCAL = "local"


class RayUnavailable(Exception):
    """Ray is not installed, or the cluster named can't be reached."""


def ray_installed() -> bool:
    """Tell whether Ray can be imported, without importing it (``qa index --ray`` checks first)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def looks_like_address(value: str) -> bool:
    """Tell whether a command-line word after ``--ray`` is its ADDRESS rather than a PATH to index."""
    return value in (LOCAL, "auto") or value.startswith("ray://") or re.fullmatch(r"[\w.-]+:\d+", value) is not None


def ray_address(value: str | None) -> str | None:
    """Return the address ``ray.init`` takes for ``--ray VALUE``: None (a new local runtime) for ``local``."""
    return None if value in (None, "", LOCAL) else value


def embedder_factory(model_name: str) -> Callable[[], object]:
    """Return a picklable callable that loads ``model_name`` inside a Ray actor.

    A model registered in this process (:func:`qa.embedder.register_embedder`, as
    tests do) travels as its registered factory; any other is loaded by name, from
    the actor's own model cache, by :func:`qa.embedder.load_embedder`.
    """
    from qa.embedder import _REGISTRY, load_embedder

    return _REGISTRY.get(model_name) or functools.partial(load_embedder, model_name)


class _EmbedActor:
    """A Ray Data actor: loads the model once, then embeds every batch it is given.

    :func:`_actor_class` makes a subclass that carries its model's factory, so the
    factory travels with the class rather than as a constructor argument.
    """

    factory: Callable[[], object]

    def __init__(self):
        self.embedder = type(self).factory()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.embedder.embed_passages([str(text) for text in batch["text"]])
        return {"position": batch["position"], "vector": np.asarray(vectors, dtype=np.float32)}


def _actor_class(factory: Callable[[], object]) -> type:
    return type("EmbedActor", (_EmbedActor,), {"factory": staticmethod(factory)})


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is a separate import with its own dependencies
    except ImportError:
        raise RayUnavailable(INSTALL_HINT) from None
    return ray


def _check_reachable(address: str | None, timeout: float = 3.0) -> None:
    """Fail in seconds, naming ``address``, when nothing listens there (Ray's own client waits ~30 s)."""
    match = re.fullmatch(r"(?:ray://)?\[?([\w.:-]+?)\]?:(\d+)", address or "")
    if not match:
        return  # None (a local runtime) or "auto": Ray itself says quickly when there is no cluster
    try:
        socket.create_connection((match[1], int(match[2])), timeout=timeout).close()
    except OSError as exc:
        raise RayUnavailable(f"can't reach the Ray cluster at '{address}': {exc.strerror or exc}") from None


def _connect(ray, address: str | None, workers: int) -> bool:
    """Join the cluster at ``address`` or start a local runtime; True when this call started it."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _check_reachable(address)
    kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address is None:  # a local runtime sized for the actors asked for, even on a small machine
        kwargs["num_cpus"] = max(workers, os.cpu_count() or 1)
    try:
        ray.init(address=address, **kwargs)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f"reach the Ray cluster at '{address}'" if address else "start a local Ray runtime"
        raise RayUnavailable(f"can't {where}: {first}") from None
    return True


def embed_on_ray(
    texts: Sequence[str],
    model_name: str,
    address: str | None = None,
    workers: int = 1,
    batch_size: int = 256,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Embed ``texts`` as passages on Ray, yielding ``(positions, vectors)`` batch by batch.

    Takes the texts; the model's name (see :func:`embedder_factory`); the address
    ``ray.init`` takes (None: a local runtime, ``auto``: the cluster this machine
    belongs to, ``ray://host:10001``: a remote one); how many actors embed; and
    the rows per batch. ``positions`` index ``texts``; every text comes back exactly
    once. A runtime started here is shut down when the iteration ends.
    Raises :class:`RayUnavailable` when Ray is missing or the cluster can't be reached.
    """
    ray = _import_ray()
    if not texts:
        return
    started = _connect(ray, address, workers)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        rows = [{"position": i, "text": text} for i, text in enumerate(texts)]
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // batch_size)))
        vectors = dataset.map_batches(
            _actor_class(embedder_factory(model_name)),
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
        for batch in vectors.iter_batches(batch_size=None, batch_format="numpy"):
            yield np.asarray(batch["position"], dtype=np.int64), np.asarray(batch["vector"], dtype=np.float32)
    finally:
        if started:
            ray.shutdown()
