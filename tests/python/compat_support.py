"""Shared pieces of the pynsq compatibility scripts.

Each script runs one tornado IOLoop against an nsqd that the Rust test started,
keeps a ledger of the message bodies it expects, and exits 0 only if every one
arrived exactly once. A hard timeout turns a hang into a failure.
"""

import asyncio
import json
import logging
import sys

import nsq
import tornado.ioloop

# How long to keep listening after the last expected message, so that a
# duplicate delivered right behind it is still caught.
DUPLICATE_GRACE_S = 0.3


def new_io_loop():
    """A fresh current IOLoop; pynsq binds to IOLoop.current() at construction."""
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.set_event_loop(asyncio.new_event_loop())
    return tornado.ioloop.IOLoop.current()


class Run:
    """One script run: the expected bodies, what arrived, and how it ended."""

    def __init__(self, io_loop, expected, timeout_s):
        self.io_loop = io_loop
        self.expected = list(expected)
        if len(set(self.expected)) != len(self.expected):
            raise ValueError("expected bodies must be distinct")
        self.counts = {}
        self.failures = []
        self.finishing = False
        self.completed = False
        self.closers = []
        self.completion_checks = []
        self.io_loop.call_later(timeout_s, self._timed_out, timeout_s)

    def fail(self, reason):
        """Records a failure and ends the run at once."""
        self.failures.append(reason)
        self._stop()

    def check(self, condition, reason):
        if not condition:
            self.fail(reason)

    def received(self, body):
        self.counts[body] = self.counts.get(body, 0) + 1
        if not self.finishing and all(b in self.counts for b in self.expected):
            self.finishing = True
            self.io_loop.call_later(DUPLICATE_GRACE_S, self._finish)

    def add_reader(self, addr, topic, channel, max_in_flight, on_message=None, lookupd=False):
        """A Reader that records each message, expecting it on its first attempt,
        and FINs it after `on_message` (if any) has seen it. With `lookupd`,
        `addr` is an nsqlookupd HTTP address and the Reader discovers nsqd there."""

        def handler(message):
            self.check(
                message.attempts == 1,
                "%r arrived on attempt %d" % (message.body, message.attempts),
            )
            if on_message is not None:
                on_message(message)
            self.received(message.body)
            message.finish()

        reader = nsq.Reader(
            topic=topic,
            channel=channel,
            message_handler=handler,
            max_in_flight=max_in_flight,
            **(
                {"lookupd_http_addresses": ["http://" + addr], "lookupd_poll_interval": 1}
                if lookupd
                else {"nsqd_tcp_addresses": [addr]}
            )
        )
        self.closers.append(reader.close)
        return reader

    def add_writer(self, addr):
        writer = nsq.Writer([addr])

        def close():
            for conn in writer.conns.values():
                conn.close()

        self.closers.append(close)
        return writer

    def on_complete(self, check):
        """Runs `check` once every expected message arrived, before the verdict."""
        self.completion_checks.append(check)

    def _timed_out(self, timeout_s):
        self.fail("hard timeout after %ss" % timeout_s)

    def _finish(self):
        for check in self.completion_checks:
            check()
        missing = [b for b in self.expected if b not in self.counts]
        duplicated = sorted(b for b, n in self.counts.items() if n > 1)
        unexpected = sorted(b for b in self.counts if b not in set(self.expected))
        if missing or duplicated or unexpected:
            self.failures.append(
                "not exactly once: missing %r, duplicated %r, unexpected %r"
                % (missing, duplicated, unexpected)
            )
        self.completed = True
        self._stop()

    def _stop(self):
        for close in self.closers:
            close()
        self.closers = []
        self.io_loop.stop()

    def exit_code(self):
        """Prints a one-line JSON summary; 0 only for a clean run."""
        if not self.completed and not self.failures:
            self.failures.append("stopped before every message arrived")
        ok = self.completed and not self.failures
        print(
            json.dumps(
                {
                    "ok": ok,
                    "expected": len(self.expected),
                    "received": sum(self.counts.values()),
                    "distinct": len(self.counts),
                    "failures": self.failures,
                }
            ),
            flush=True,
        )
        return 0 if ok else 1
