"""Python's Pool(2).map of x*x over 100,000 items, measured the way
`shmkit bench --cases pool_map` measures shmkit's pool: the same loop in one
process (the floor), the pool with its default chunking, and with
chunksize=1. Prints items per second and the per-item overhead over the
floor. Never a test dependency:

    python3 benches/pool_map.py [rounds]
"""
import sys
import time
from multiprocessing import Pool

ITEMS = 100_000


def square(x):
    return x * x


def rate(run, maps):
    run()  # warm-up
    t0 = time.perf_counter()
    for _ in range(maps):
        run()
    return maps * ITEMS / (time.perf_counter() - t0)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    items = range(ITEMS)
    with Pool(2) as pool:
        impls = [
            ("single_process", lambda: [square(x) for x in items], 10),
            ("python_pool", lambda: pool.map(square, items), 10),
            ("python_pool_chunk1", lambda: pool.map(square, items, chunksize=1), 2),
        ]
        for r in range(rounds):
            floor = None
            for name, run, maps in impls:
                v = rate(run, maps)
                floor = floor or v
                overhead_us = (1 / v - 1 / floor) * 1e6
                print(f"round {r + 1} {name:20} {v / 1e6:8.3f} M items/s"
                      f"  +{overhead_us:.3f} us/item over the floor")


if __name__ == "__main__":
    main()
