"""pynsq round trip against our nsqd: nsq.Writer publishes with PUB, MPUB and
DPUB, an nsq.Reader with max_in_flight > 1 consumes and FINs every message.

Exits 0 only if every message arrived exactly once, on its first attempt, and no
deferred message came before its delay. Prints a one-line JSON summary.

usage: pynsq_roundtrip.py HOST:PORT TOPIC [--channel C] [--pub N] [--mpub N]
       [--dpub N] [--dpub-delay-ms MS] [--max-in-flight N] [--timeout S]
"""

import argparse
import sys
import time

import nsq

from compat_support import Run, new_io_loop


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("topic")
    parser.add_argument("--channel", default="pynsq")
    parser.add_argument("--pub", type=int, default=10)
    parser.add_argument("--mpub", type=int, default=10)
    parser.add_argument("--dpub", type=int, default=5)
    parser.add_argument("--dpub-delay-ms", type=int, default=200)
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()

    singles = [("pub-%d" % i).encode() for i in range(args.pub)]
    batch = [("mpub-%d" % i).encode() for i in range(args.mpub)]
    deferred = [("dpub-%d" % i).encode() for i in range(args.dpub)]

    io_loop = new_io_loop()
    run = Run(io_loop, singles + batch + deferred, args.timeout)
    dpub_sent_at = {}
    acks = []

    def on_message(message):
        sent_at = dpub_sent_at.get(message.body)
        if sent_at is not None:
            waited_ms = (time.monotonic() - sent_at) * 1000
            run.check(
                waited_ms >= args.dpub_delay_ms,
                "%r arrived after %.0f ms, deferred by %d ms"
                % (message.body, waited_ms, args.dpub_delay_ms),
            )

    reader = run.add_reader(
        args.address, args.topic, args.channel, args.max_in_flight, on_message
    )
    writer = run.add_writer(args.address)

    def acked(conn, data):
        # `data` is the response body, or an nsq.Error.
        run.check(data == b"OK", "publish answered %r" % (data,))
        acks.append(data)

    def publish_when_ready():
        # A Writer can publish only once its IDENTIFY is done. Waiting for the
        # Reader's connection as well lets its SUB usually come first; nsqd keeps
        # a topic's messages for its first channel either way.
        ready = any(c.connected() for c in writer.conns.values()) and reader.conns
        if not ready:
            io_loop.call_later(0.02, publish_when_ready)
            return
        for body in singles:
            writer.pub(args.topic, body, callback=acked)
        if batch:
            writer.mpub(args.topic, batch, callback=acked)
        for body in deferred:
            dpub_sent_at[body] = time.monotonic()
            writer.dpub(args.topic, args.dpub_delay_ms, body, callback=acked)

    def check_acks_and_rdy():
        commands = len(singles) + (1 if batch else 0) + len(deferred)
        run.check(len(acks) == commands, "%d acks for %d commands" % (len(acks), commands))
        # After its first message a Reader raises RDY to max_in_flight.
        rdy = max((c.last_rdy for c in reader.conns.values()), default=0)
        run.check(
            rdy == args.max_in_flight, "reader RDY %d, wanted %d" % (rdy, args.max_in_flight)
        )

    run.on_complete(check_acks_and_rdy)
    io_loop.add_callback(publish_when_ready)
    io_loop.start()
    return run.exit_code()


if __name__ == "__main__":
    sys.exit(main())
