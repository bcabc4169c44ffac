"""The process's life as telemetry sees it: how it was started, forks, one-time work, shutdown.

A leaf: it imports nothing from the package, so every module may register with it.

- Start: :func:`is_prefork_master` (gunicorn ``--preload`` before it forks its workers),
  :func:`is_autoreload_watcher` (runserver's file watcher, which serves nothing) and
  :func:`is_development_server`.
- Fork: a module that keeps per-process state registers a reset with :func:`on_reset`; it
  runs in every forked child (the parent's threads, locks and providers do not serve it) and
  when a test calls :func:`otel_hcv.testing.reset`.
- Once: :func:`once` is the one "has this been done in this process" flag.
- Shutdown: :func:`shutdown_within` flushes providers within a bounded time, and
  :func:`flush_on_sigterm` makes SIGTERM flush too.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

logger = logging.getLogger("otel_hcv")

SHUTDOWN_TIMEOUT_SECONDS = 3.0

_lock = threading.RLock()
_done: set[str] = set()
_resets: list[Callable[[], None]] = []
_forked_child = False


def once(key: str) -> bool:
    """True the first time ``key`` is asked for in this process (and after a reset), else False."""
    with _lock:
        if key in _done:
            return False
        _done.add(key)
        return True


def forget(key: str) -> None:
    """Let :func:`once` answer True for ``key`` again (tests)."""
    with _lock:
        _done.discard(key)


def on_reset(reset: Callable[[], None]) -> Callable[[], None]:
    """Register ``reset`` to forget a module's per-process state in a forked child and in
    :func:`reset_process_state`. Usable as a decorator; resets run in registration order."""
    with _lock:
        if reset not in _resets:
            _resets.append(reset)
    return reset


def reset_process_state(*, forget_once: bool = True) -> None:
    """Run every registered reset; with ``forget_once`` also forget what :func:`once` recorded."""
    if forget_once:
        _done.clear()
    for reset in list(_resets):
        try:
            reset()
        except Exception:  # one module's reset must not keep the others from theirs
            logger.debug("otel-hcv: a per-process reset failed", exc_info=True)


def _after_fork_in_child() -> None:
    global _forked_child, _lock
    _forked_child = True
    _lock = threading.RLock()  # a parent thread may have held it at fork time
    # What was done once in the parent stays done (hooks it registered are inherited).
    reset_process_state(forget_once=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def is_forked_child() -> bool:
    return _forked_child


def _is_gunicorn(argv: Sequence[str]) -> bool:
    """``sys.argv`` of ``gunicorn ...`` or ``python -m gunicorn ...``."""
    return bool(argv) and (
        os.path.basename(argv[0]).startswith("gunicorn") or os.path.join("gunicorn", "__main__.py") in argv[0]
    )


def _is_gunicorn_process(cmdline: Sequence[str]) -> bool:
    """A process command line: ``python .../gunicorn``, ``python -m gunicorn`` or, with
    setproctitle, ``gunicorn: master [app]``."""
    return any(os.path.basename(part).startswith("gunicorn") for part in cmdline[:3])


def is_prefork_master(argv: Sequence[str] | None = None) -> bool:
    """True in a gunicorn master process, before it forks its workers.

    A worker is a forked child (the fork hook ran) or, when this package was first
    imported after the fork, a process whose parent is gunicorn.
    """
    argv = sys.argv if argv is None else argv
    if not _is_gunicorn(argv) or _forked_child:
        return False
    try:
        import psutil

        return not _is_gunicorn_process(psutil.Process(os.getppid()).cmdline())
    except Exception:  # parent gone or unreadable: treat as a worker, which always exports
        return False


def is_autoreload_watcher(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """True in the parent process of ``manage.py runserver`` that only watches files.

    Django's autoreloader runs the server in a child process marked with
    ``RUN_MAIN=true``; the parent never serves a request, so exporting from it would
    only duplicate resource-level telemetry under another instance id.
    """
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    return "runserver" in argv and "--noreload" not in argv and environ.get("RUN_MAIN") != "true"


def is_development_server(argv: Sequence[str] | None = None) -> bool:
    """``manage.py runserver`` (or django-extensions' ``runserver_plus``)."""
    argv = sys.argv if argv is None else argv
    return any(arg in ("runserver", "runserver_plus") for arg in argv[1:3])


def in_forked_children(action: Callable[[], None]) -> None:
    """Run ``action`` in every child this process forks from now on (registered once per action)."""
    if not once(f"fork:{action.__module__}.{action.__qualname__}"):
        return

    def run() -> None:
        try:
            action()
        except Exception:  # telemetry never stops a worker from serving
            logger.exception("otel-hcv: telemetry setup failed in a forked worker")

    os.register_at_fork(after_in_child=run)


class Flushable(Protocol):
    def shutdown(self) -> Any: ...


def shutdown_within(providers: Iterable[Flushable], timeout_seconds: float = SHUTDOWN_TIMEOUT_SECONDS) -> bool:
    """Shut ``providers`` down (flushing them), waiting at most ``timeout_seconds``.

    With the collector down or hanging, exporters retry for up to ``OTEL_EXPORTER_OTLP_TIMEOUT``
    per signal; a service must still stop promptly, so whatever is not out by the deadline is
    dropped (the export threads are daemons). Returns True when everything was flushed in time.
    """
    providers = list(providers)

    def stop_all() -> None:
        for provider in providers:
            try:
                provider.shutdown()
            except Exception:  # a failing exporter must not stop the others
                logger.debug("otel-hcv: provider shutdown failed", exc_info=True)

    stopper = threading.Thread(target=stop_all, name="otel-hcv-shutdown", daemon=True)
    stopper.start()
    stopper.join(timeout_seconds)
    if stopper.is_alive():
        logger.warning(
            "otel-hcv: telemetry not flushed within %.1f s at shutdown (collector unreachable?); the rest is dropped",
            timeout_seconds,
        )
        return False
    return True


def flush_on_sigterm(flush: Callable[[], object]) -> None:
    """Call ``flush`` when SIGTERM ends the process, then end it as SIGTERM would.

    Python's default for SIGTERM ends the process on the spot, without the exit hooks that
    flush, so a development server stopped by a process manager would lose its last spans
    and metrics. Only when nobody else handles SIGTERM: gunicorn and uvicorn install their
    own handlers and exit normally, which flushes at exit. After the flush the signal is
    delivered again with the default action, so the exit status still says "terminated by
    SIGTERM".
    """
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def flush_then_terminate(signum: int, frame: Any) -> None:
            flush()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, flush_then_terminate)
    except (ValueError, OSError):  # no signals here (an embedded interpreter)
        return
