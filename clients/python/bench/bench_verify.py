#!/usr/bin/env python3
"""Per-request cost of verifying an aidlc-auth token: local (warm JWKS cache) and strict
(local + introspection over loopback).

Usage: AIDLC_AUTH_BIN=/path/to/aidlc-auth python bench/bench_verify.py [N]
Starts the binary on a loopback port with a throwaway SQLite file, gets a token, and prints
the median and mean of N local verifications and of N/10 strict ones.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE.parent)]

from aidlc_auth_verifier import Settings, Verifier  # noqa: E402
from tests.service import INTROSPECTION_SECRET, Service  # noqa: E402


async def timings(call: Callable[[str], Awaitable[Any]], header: str, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call(header)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def line(name: str, samples: list[float]) -> str:
    return f"{name:<30} median {statistics.median(samples):8.1f} µs   mean {statistics.fmean(samples):8.1f} µs   (n={len(samples)})"


async def main(n: int) -> None:
    service = Service().start()
    try:
        token = service.register_user()["access_token"]
        verifier = Verifier(Settings(url=service.url, issuer=service.issuer,
                                     introspection_secret=INTROSPECTION_SECRET))
        header = f"Bearer {token}"
        await verifier.verify_strict(header)  # warms the JWKS cache and the connection
        await timings(verifier.verify, header, 200)
        local = await timings(verifier.verify, header, n)
        strict = await timings(verifier.verify_strict, header, max(n // 10, 50))
        print(line("local verify (warm cache)", local))
        print(line("strict verify (introspection)", strict))
        print(f"{'strict mode adds':<30} median {statistics.median(strict) - statistics.median(local):8.1f} µs")
        await verifier.aclose()
    finally:
        service.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
