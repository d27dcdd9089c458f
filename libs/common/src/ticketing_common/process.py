"""Process-wide runtime settings every service applies once it has started."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Exclude every object alive now (modules, the app, its libraries) from future garbage collections.

    A full collection walks every tracked object, a pause every request and event in flight waits through; after
    the freeze it walks only what was allocated since (bench/README.md has the pauses). Frozen objects are never
    freed, which is what start-up state is for anyway. No collection first: in a test process, which starts many
    apps, each would walk the whole test session's heap.
    """
    gc.freeze()
