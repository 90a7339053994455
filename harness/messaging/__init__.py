"""Messaging among Nova's (and Cinder's and Neutron's) parts: ``rpc.call`` and ``rpc.cast``.

:mod:`~harness.messaging.base` is the transport interface (publish and consume, nothing more),
:mod:`~harness.messaging.memory` the embedded transport on asyncio queues, and
:mod:`~harness.messaging.rpc` the traced ``call``/``cast`` built on any transport.
"""

from harness.messaging.base import Message, Transport, make_transport
from harness.messaging.rpc import RpcClient, RpcError, RpcServer, RpcTimeout

__all__ = [
    "Message", "Transport", "make_transport", "RpcClient", "RpcServer", "RpcError", "RpcTimeout",
]
