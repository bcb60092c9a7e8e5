"""Online reads from Python: latency of one feature vector through quiver.FeatureStore
(in-process, the configured online store) and, when a server URL is given, through quiver.Client
(HTTP). Prints one JSON line per path with p50/p90/p99/p99.9 in milliseconds.

    python python_online.py REPO N [SERVER_URL]
"""

import json
import random
import sys
import time

import quiver


def percentiles(samples):
    samples = sorted(samples)
    at = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1e3
    return {"n": len(samples), "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99),
            "p999_ms": at(0.999), "max_ms": samples[-1] * 1e3}


def run(name, read, n, drivers, customers):
    rng = random.Random(7)
    for _ in range(min(1000, n)):  # warm-up: connections, caches, allocator
        read(rng)
    samples = []
    found = 0
    for _ in range(n):
        t0 = time.perf_counter()
        response = read(rng)
        samples.append(time.perf_counter() - t0)
        found += response.statuses[2][0] == "PRESENT"
    print(json.dumps({"path": name, **percentiles(samples), "present": found / n}), flush=True)


def main():
    repo, n = sys.argv[1], int(sys.argv[2])
    url = sys.argv[3] if len(sys.argv) > 3 else None
    drivers, customers = range(1001, 1001 + 100000), range(1, 200001)

    def entities(rng):
        return {"driver_id": [rng.choice(drivers)], "customer_id": [rng.choice(customers)]}

    store = quiver.FeatureStore(repo)
    run("FeatureStore (in-process)", lambda rng: store.get_online_features("model_v1", entities(rng)),
        n, drivers, customers)
    store.close()
    if url:
        client = quiver.Client(url)
        run("Client (HTTP)", lambda rng: client.get_online_features("model_v1", entities(rng)),
            n, drivers, customers)


if __name__ == "__main__":
    main()
