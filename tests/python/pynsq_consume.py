"""A pynsq consumer for messages someone else publishes: an nsq.Reader on
TOPIC/CHANNEL expects the bodies PREFIX0 .. PREFIX{N-1} and FINs each one.

Exits 0 only if every one arrived exactly once, on its first attempt. Prints a
one-line JSON summary.

usage: pynsq_consume.py HOST:PORT TOPIC CHANNEL --count N [--prefix P]
       [--max-in-flight N] [--timeout S] [--lookupd]

With --lookupd, HOST:PORT is an nsqlookupd HTTP address to discover nsqd at.
"""

import argparse
import sys

from compat_support import Run, new_io_loop


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("topic")
    parser.add_argument("channel")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefix", default="raw-")
    parser.add_argument("--max-in-flight", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--lookupd", action="store_true")
    args = parser.parse_args()

    expected = [("%s%d" % (args.prefix, i)).encode() for i in range(args.count)]
    run = Run(new_io_loop(), expected, args.timeout)
    run.add_reader(args.address, args.topic, args.channel, args.max_in_flight, lookupd=args.lookupd)
    run.io_loop.start()
    return run.exit_code()


if __name__ == "__main__":
    sys.exit(main())
