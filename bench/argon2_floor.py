#!/usr/bin/env python3
"""The Argon2 floor: Argon2id hashes per second of the reference C implementation
(argon2-cffi) at the given parameters, with one process per worker hashing for SECONDS.

    argon2_floor.py MEMORY_KIB ITERATIONS PARALLELISM SECONDS WORKERS

Prints one JSON object: hashes, seconds, hashes_per_second (each worker's rate, summed),
cpu_seconds, hashes_per_cpu_second, workers, argon2_cffi (its version).
"""
import json, os, sys, time
from multiprocessing import Pool

from importlib.metadata import version

from argon2.low_level import Type, hash_secret_raw


def hash_for(args):
    memory_kib, iterations, parallelism, seconds = args
    salt = os.urandom(16)
    start, cpu = time.monotonic(), time.process_time()
    end = start + seconds
    n = 0
    while time.monotonic() < end:
        hash_secret_raw(b"violet harbor lantern 4821", salt, time_cost=iterations,
                        memory_cost=memory_kib, parallelism=parallelism, hash_len=32, type=Type.ID)
        n += 1
    return n, time.monotonic() - start, time.process_time() - cpu


def main() -> None:
    memory_kib, iterations, parallelism, seconds, workers = map(int, sys.argv[1:6])
    with Pool(workers) as pool:
        results = pool.map(hash_for, [(memory_kib, iterations, parallelism, seconds)] * workers)
    # Each worker's own rate, summed: process start-up is not hashing time.
    print(json.dumps({
        "hashes": sum(r[0] for r in results),
        "seconds": max(r[1] for r in results),
        "hashes_per_second": sum(n / t for n, t, _ in results),
        # What one CPU-second of hashing yields: unlike the rate, other work on the machine
        # does not change it.
        "cpu_seconds": sum(r[2] for r in results),
        "hashes_per_cpu_second": sum(r[0] for r in results) / sum(r[2] for r in results),
        "workers": workers,
        "argon2_cffi": version("argon2-cffi"),
    }))


if __name__ == "__main__":
    main()
