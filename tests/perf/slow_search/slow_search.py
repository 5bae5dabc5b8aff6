"""Test layer over the backend image: every catalog search answers 30 ms later (a real latency regression).

Copied into the image's site-packages with `slow_search.pth` by build_slow_layer (__init__.py).
"""

import asyncio

from shop import catalog

DELAY_S = 0.030
_search = catalog.Catalog.search


async def _slower_search(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    await asyncio.sleep(DELAY_S)
    return await _search(self, *args, **kwargs)


catalog.Catalog.search = _slower_search
