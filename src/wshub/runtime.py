"""Process-wide settings that ``wshub serve`` applies once the gateway has started.

CPython's cyclic collector runs a young-generation pass every ``threshold0`` net
allocations of tracked objects and, now and then, a full pass over every tracked object in
the process. A gateway allocates dozens of tracked objects per accepted connection (the
transports, the session, the request, timers), so under a connection storm the default
(700) runs hundreds of passes per second, and each full pass walks every live connection
plus everything imported at start-up. Freezing the start-up objects and raising the young
threshold keeps the collector but makes it run rarely and scan only what matters.
"""

from __future__ import annotations

import gc
import logging

from wshub.config import RuntimeConfig

log = logging.getLogger("wshub.runtime")


def tune_gc(cfg: RuntimeConfig) -> None:
    """Apply ``cfg`` to this process's garbage collector and log the outcome."""
    if cfg.gc_threshold:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(cfg.gc_threshold, gen1, gen2)
    if cfg.gc_freeze:
        gc.collect()
        gc.freeze()
    log.info(
        "garbage collector tuned",
        extra={
            "event": "gc_tuned",
            "threshold": list(gc.get_threshold()),
            "frozen": gc.get_freeze_count(),
        },
    )
