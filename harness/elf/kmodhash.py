"""The iteration order of kmod's hash table, which decides parts of depmod's output order.

depmod builds its module list by walking ``modules_by_name`` (512 buckets) and writes
modules.symbols by walking ``symbols`` (2048 buckets). kmod's table (shared/hash.c) never
resizes: a key goes to bucket ``superfast(key) & (buckets - 1)``, and each bucket keeps its keys
sorted with strcmp. So the walk order is a pure function of the key set, reproduced here with Paul
Hsieh's SuperFastHash exactly as kmod computes it (32-bit, little-endian 16-bit reads, signed
chars in the tail).
"""

from __future__ import annotations

from collections.abc import Iterable

_MASK = 0xFFFFFFFF

MODULES_BY_NAME_BUCKETS = 512
SYMBOLS_BUCKETS = 2048


def _signed(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def superfast(key: bytes) -> int:
    """kmod's hash_superfast() of KEY."""
    length = len(key)
    value = length
    tail = length & 3
    at = 0
    for _ in range(length >> 2):
        value = (value + (key[at] | key[at + 1] << 8)) & _MASK
        tmp = (((key[at + 2] | key[at + 3] << 8) << 11) ^ value) & _MASK
        value = ((value << 16) & _MASK) ^ tmp
        at += 4
        value = (value + (value >> 11)) & _MASK
    if tail == 3:
        value = (value + (key[at] | key[at + 1] << 8)) & _MASK
        value ^= (value << 16) & _MASK
        value ^= (_signed(key[at + 2]) << 18) & _MASK
        value = (value + (value >> 11)) & _MASK
    elif tail == 2:
        value = (value + (key[at] | key[at + 1] << 8)) & _MASK
        value ^= (value << 11) & _MASK
        value = (value + (value >> 17)) & _MASK
    elif tail == 1:
        value = (value + _signed(key[at])) & _MASK
        value ^= (value << 10) & _MASK
        value = (value + (value >> 1)) & _MASK
    value ^= (value << 3) & _MASK
    value = (value + (value >> 5)) & _MASK
    value ^= (value << 4) & _MASK
    value = (value + (value >> 17)) & _MASK
    value ^= (value << 25) & _MASK
    value = (value + (value >> 6)) & _MASK
    return value


def iteration_order(keys: Iterable[bytes], buckets: int) -> list[bytes]:
    """KEYS in the order kmod's hash_iter would visit them in a table of BUCKETS buckets."""
    mask = buckets - 1
    return sorted(keys, key=lambda key: (superfast(key) & mask, key))
