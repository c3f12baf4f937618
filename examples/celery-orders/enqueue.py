"""Queues orders for process_order: `python enqueue.py 500 [FIRST]`; each task's id is `order-<n>`."""

import sys

from worker import process_order


def main() -> None:
    try:
        count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
        first = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    except ValueError:
        sys.exit("usage: python enqueue.py COUNT [FIRST]   (e.g. python enqueue.py 500)")
    for n in range(first, first + count):
        process_order.apply_async(args=[f"order-{n}"], task_id=f"order-{n}")
    print(f"queued {count} orders (order-{first} .. order-{first + count - 1})")


if __name__ == "__main__":
    main()
