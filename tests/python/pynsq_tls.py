"""pynsq over TLS against our nsqd: an nsq.Writer publishes COUNT messages and
an nsq.Reader consumes them, both asking for TLS (`tls_v1`) and verifying
nsqd's certificate against the test CA, optionally with deflate on top of TLS.

Exits 0 only if every message arrived exactly once, on its first attempt, and
every connection of both ended up on TLS. Prints a one-line JSON summary.

usage: pynsq_tls.py HOST:PORT TOPIC --ca CA.pem [--channel C] [--count N]
       [--deflate] [--timeout S]
"""

import argparse
import ssl
import sys

import nsq
import tornado.iostream

from compat_support import Run, new_io_loop


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("topic")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--channel", default="py")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()

    tls = {
        "tls_v1": True,
        "tls_options": {"ca_certs": args.ca, "cert_reqs": ssl.CERT_REQUIRED},
        "deflate": args.deflate,
    }
    bodies = [("tls-%d" % i).encode() for i in range(args.count)]
    io_loop = new_io_loop()
    run = Run(io_loop, bodies, args.timeout)

    def handler(message):
        run.check(message.attempts == 1, "%r on attempt %d" % (message.body, message.attempts))
        run.received(message.body)
        return True

    reader = nsq.Reader(
        topic=args.topic,
        channel=args.channel,
        message_handler=handler,
        nsqd_tcp_addresses=[args.address],
        max_in_flight=4,
        **tls
    )
    run.closers.append(reader.close)
    writer = nsq.Writer([args.address], **tls)
    run.closers.append(lambda: [c.close() for c in list(writer.conns.values())])

    def acked(conn, data):
        run.check(data == b"OK", "publish answered %r" % (data,))

    def publish_when_ready():
        ready = any(c.connected() for c in writer.conns.values()) and reader.conns
        if not ready:
            io_loop.call_later(0.02, publish_when_ready)
            return
        for body in bodies:
            writer.pub(args.topic, body, callback=acked)

    def all_on_tls():
        conns = list(reader.conns.values()) + list(writer.conns.values())
        run.check(conns, "no connections left to inspect")
        for conn in conns:
            run.check(
                isinstance(conn.stream, tornado.iostream.SSLIOStream),
                "%s is not on TLS" % conn,
            )
            if args.deflate:
                run.check(
                    type(conn.socket).__name__ == "DeflateSocket",
                    "%s did not upgrade to deflate" % conn,
                )

    run.on_complete(all_on_tls)
    io_loop.add_callback(publish_when_ready)
    io_loop.start()
    return run.exit_code()


if __name__ == "__main__":
    sys.exit(main())
