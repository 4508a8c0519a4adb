"""Drive redis_base plans with a sync or an async redis-py client.

A plan yields a `Script`, a `Command`, a list of them (sent as one pipeline), or an `Emit`.
The only thing the two drivers differ in is `await`.

On Redis Cluster, redis-py refuses EVALSHA inside a cluster pipeline, so a batch is split
by node and each part goes through a plain pipeline on that node's connection; an op that
comes back redirected (MOVED/ASK during resharding) is retried through the cluster client.
The async driver sends a cluster batch as concurrent single calls instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from dualsaver.stores.redis_ops import Emit, Op, Plan, Script
from dualsaver.stores.redis_lua import SCRIPTS

ASYNC_CLUSTER_CONCURRENCY = 32


def _route_key(op: Op) -> Any:
    return op.keys[0] if isinstance(op, Script) else op.args[1]


def require_binary(client: Any) -> None:
    """Values are bytes: a client that decodes responses would corrupt them."""
    try:
        encoder = client.get_encoder()
    except AttributeError:
        encoder = client.connection_pool.get_encoder()
    if encoder.decode_responses:
        raise ValueError("the Redis client must be created with decode_responses=False")


class SyncDriver:
    def __init__(self, client: Any, cluster: bool) -> None:
        require_binary(client)
        self.client = client
        self.cluster = cluster
        self.scripts = {name: client.register_script(src) for name, src in SCRIPTS.items()}

    def run(self, plan: Plan) -> Any:
        """Drive a plan that emits nothing; return its result."""
        reply: Any = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return done.value
            reply = self._do(step)

    def iterate(self, plan: Plan) -> Iterator[Any]:
        reply: Any = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration:
                return
            if isinstance(step, Emit):
                reply = None
                yield step.item
            else:
                reply = self._do(step)

    def _do(self, step: Op | list[Op]) -> Any:
        if isinstance(step, list):
            return self._batch(step)
        return self._one(step, self.client)

    def _one(self, op: Op, client: Any) -> Any:
        if isinstance(op, Script):
            return self.scripts[op.name](keys=op.keys, args=op.args, client=client)
        return client.execute_command(*op.args)

    def _batch(self, ops: list[Op]) -> list[Any]:
        if not ops:
            return []
        if not self.cluster:
            pipe = self.client.pipeline(transaction=False)
            for op in ops:
                self._one(op, pipe)
            return pipe.execute()
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, op in enumerate(ops):
            node = self.client.get_node_from_key(_route_key(op))
            by_node.setdefault(node.name, (node, []))[1].append(i)
        results: list[Any] = [None] * len(ops)
        for node, positions in by_node.values():
            pipe = self.client.get_redis_connection(node).pipeline(transaction=False)
            for i in positions:
                self._one(ops[i], pipe)
            for i, reply in zip(positions, pipe.execute(raise_on_error=False)):
                # A redirected or failed op is retried once through the cluster client,
                # which follows MOVED/ASK and raises a genuine error.
                results[i] = self._one(ops[i], self.client) if isinstance(reply, Exception) else reply
        return results


class AsyncDriver:
    def __init__(self, client: Any, cluster: bool) -> None:
        require_binary(client)
        self.client = client
        self.cluster = cluster
        self.scripts = {name: client.register_script(src) for name, src in SCRIPTS.items()}

    async def run(self, plan: Plan) -> Any:
        reply: Any = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return done.value
            reply = await self._do(step)

    async def iterate(self, plan: Plan) -> AsyncIterator[Any]:
        reply: Any = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration:
                return
            if isinstance(step, Emit):
                reply = None
                yield step.item
            else:
                reply = await self._do(step)

    async def _do(self, step: Op | list[Op]) -> Any:
        if isinstance(step, list):
            return await self._batch(step)
        return await self._one(step)

    async def _one(self, op: Op) -> Any:
        if isinstance(op, Script):
            return await self.scripts[op.name](keys=op.keys, args=op.args)
        return await self.client.execute_command(*op.args)

    async def _batch(self, ops: list[Op]) -> list[Any]:
        if not ops:
            return []
        if self.cluster:
            gate = asyncio.Semaphore(ASYNC_CLUSTER_CONCURRENCY)

            async def one(op: Op) -> Any:
                async with gate:
                    return await self._one(op)

            return list(await asyncio.gather(*(one(op) for op in ops)))
        pipe = self.client.pipeline(transaction=False)
        for op in ops:
            if isinstance(op, Script):
                await self.scripts[op.name](keys=op.keys, args=op.args, client=pipe)
            else:
                pipe.execute_command(*op.args)
        return await pipe.execute()
