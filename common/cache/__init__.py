"""The cache's machinery (backends, generations, single flight, the cross-process lock, failing
open); services use it through `services/cache_service.py`. See `cache.py`."""
