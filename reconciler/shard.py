"""`--shard K/N`: a deterministic partition of accounts for CI matrices.

An account's shard is sha256(account id) mod N, so it depends only on its own id: adding
or removing accounts never moves the others, and every account lands in exactly one shard.
"""

from __future__ import annotations

import hashlib
import re

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """`2/4` -> (2, 4); K is 1-based. Raises ValueError with what to write."""
    match = _SHARD.match(text)
    if not match:
        raise ValueError(f"{text!r} is not K/N; write e.g. --shard 1/4")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= k <= n:
        raise ValueError(
            f"{text!r}: K must be between 1 and N (N >= 1), e.g. --shard 1/{max(n, 1)}"
        )
    return k, n


def shard_of(account_id: str, n: int) -> int:
    """1-based shard of an account among n."""
    digest = hashlib.sha256(str(account_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def in_shard(account_id: str, shard: tuple[int, int]) -> bool:
    k, n = shard
    return shard_of(account_id, n) == k
