"""Where dualsaver's plain-Redis checkpointer used to live; it is `dualsaver.redis` now.
This path stays importable, as the README once documented it."""

from dualsaver.redis import AsyncRedisSaver, BaseRedisSaver, RedisSaver, aopen_redis_saver, open_redis_saver

__all__ = ["AsyncRedisSaver", "BaseRedisSaver", "RedisSaver", "aopen_redis_saver", "open_redis_saver"]
