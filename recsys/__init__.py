"""recsys: recommendations and cross-sell for online shops (README.md)."""

from recsys.kernel_cache import refresh as _refresh_kernel_cache

_refresh_kernel_cache()  # before any compiled kernel is loaded: see recsys.kernel_cache
