"""Send a steady trickle of requests to the example web app (for the demo dashboards).

    python -m examples.webapp.load --url http://localhost:8000 --rate 2
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import httpx


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--rate", type=float, default=2.0, help="requests per second")
    args = parser.parse_args()
    with httpx.Client(base_url=args.url, timeout=10) as client:
        while True:
            try:
                if random.random() < 0.5:
                    client.post("/signup", json={"user_id": random.randint(1, 10_000)})
                else:
                    # About one order in ten is too large and fails ("out of stock").
                    quantity = random.choice([1, 1, 2, 3, 5, 8, 1, 2, 4, 50])
                    client.post("/orders", json={"item": "widget", "quantity": quantity})
            except httpx.HTTPError as exc:
                print(f"load: {type(exc).__name__}: {exc}", file=sys.stderr)
                time.sleep(2)
            time.sleep(random.expovariate(args.rate))


if __name__ == "__main__":
    sys.exit(main())
