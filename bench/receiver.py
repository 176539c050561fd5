#!/usr/bin/env python3
"""bench/receiver.py - a webhook receiver for bench/relay.sh

Usage:  python3 bench/receiver.py PORT-FILE [--latency-ms MS] [--port PORT]

Listens on 127.0.0.1 (PORT, default: a free one chosen by the kernel) and
writes the port it got into PORT-FILE once it accepts connections, so the
caller can wait for that file.  Every POST is answered "200 OK" after a
latency: --latency-ms (default 0), or the request's own `?latency_ms=N`
query parameter, so that one receiver serves every case of the benchmark.

It counts, from the moment the request has been read to the moment its
answer is written, the deliveries in flight, and keeps the most it saw at
once.  It also counts requests, the connections that posted (and the most
open at once), distinct event ids (the X-Orderexp-Id header that
orderexp-relay's webhook sink sends, checked against the "id" at the start
of the JSON body), duplicates (a request for an id seen before) and
malformed requests.

Control requests, which are not counted:
  GET /stats   the counters as one JSON object
  GET /reset   zero the counters (and forget the ids seen), answers the
               counters as they were

Raw HTTP/1.1 on asyncio.Protocol (no http.server: one thread per connection
cannot hold hundreds of slow deliveries, and the streams API costs a lot
more per request): keep-alive, requests with a Content-Length (libcurl's
POSTs; "Expect: 100-continue" is answered), one request at a time per
connection (a pipelined request waits in the buffer until the previous one
is answered, so answers keep their order).  Ends on SIGTERM or SIGINT.
"""
import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time

# the body of an event starts {"id":123,...} (row_to_json in relay/node.c)
BODY_ID = re.compile(rb'^\s*\{\s*"id"\s*:\s*(\d+)')
MAX_HEAD = 65536


class Counters:
    """What the receiver saw since the last reset."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.requests = 0
        self.ids = set()
        self.duplicates = 0
        self.bad = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self.max_connections = 0
        self.first = None
        self.last = None

    def snapshot(self):
        return {
            "requests": self.requests,
            "distinct_ids": len(self.ids),
            "duplicates": self.duplicates,
            "bad": self.bad,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "connections": self.connections,
            "max_connections": self.max_connections,
            "first_request": self.first,
            "last_answer": self.last,
        }


C = Counters()
# open connections that have posted (control requests do not count); they
# live across resets, so they are counted apart
OPEN = 0


def answer(status, body=b"", close=False):
    head = "HTTP/1.1 %s\r\nContent-Length: %d\r\nContent-Type: %s\r\n%s\r\n" % (
        status, len(body),
        "application/json" if body[:1] == b"{" else "text/plain",
        "Connection: close\r\n" if close else "")
    return head.encode() + body


OK = answer("200 OK", b"ok")


class Http(asyncio.Protocol):
    """One client connection: parse a request, answer it, then the next."""

    def __init__(self, default_latency):
        self.default_latency = default_latency
        self.buf = bytearray()
        self.busy = False
        self.transport = None
        self.posted = False				# counted in OPEN
        self.continued = False			# sent 100 Continue for this request

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        global OPEN
        if self.posted:
            OPEN -= 1
            C.connections = OPEN
        self.transport = None

    def data_received(self, data):
        self.buf += data
        if not self.busy:
            self.next_request()

    def next_request(self):
        """Take one whole request off the buffer, if there is one."""
        global OPEN
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self.fail("431 Request Header Fields Too Large")
            return
        lines = bytes(self.buf[:end]).split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ")
        except ValueError:
            self.fail("400 Bad Request")
            return
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                self.fail("400 Bad Request")
                return
            headers[name.strip().lower()] = value.strip()
        if b"transfer-encoding" in headers:
            self.fail("411 Length Required")
            return
        try:
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            self.fail("400 Bad Request")
            return
        if len(self.buf) < end + 4 + length:
            # the body is not all in yet; a client that waits for leave to
            # send it gets it once (orderexp-relay turns Expect off)
            if (headers.get(b"expect", b"").lower() == b"100-continue"
                    and not self.continued):
                self.continued = True
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        self.continued = False
        body = bytes(self.buf[end + 4:end + 4 + length])
        del self.buf[:end + 4 + length]
        close = (version != "HTTP/1.1" or
                 headers.get(b"connection", b"").lower() == b"close")
        path, _, query = target.partition("?")

        if method == "GET" and path in ("/stats", "/reset"):
            snap = C.snapshot()
            if path == "/reset":
                flying = C.in_flight
                C.reset()
                C.connections = C.max_connections = OPEN
                C.in_flight = C.max_in_flight = flying
            self.respond(answer("200 OK", json.dumps(snap).encode() + b"\n", close),
                         close, counted=False)
            return
        if method != "POST":
            self.fail("405 Method Not Allowed")
            return

        latency = self.default_latency
        for param in query.split("&"):
            name, _, value = param.partition("=")
            if name == "latency_ms":
                try:
                    latency = float(value) / 1000.0
                except ValueError:
                    self.fail("400 Bad Request")
                    return

        if not self.posted:
            self.posted = True
            OPEN += 1
            C.connections = OPEN
            C.max_connections = max(C.max_connections, OPEN)
        now = time.time()
        if C.first is None:
            C.first = now
        C.requests += 1
        m = BODY_ID.match(body)
        hid = headers.get(b"x-orderexp-id")
        if hid is None or m is None or m.group(1) != hid:
            C.bad += 1
        elif hid in C.ids:
            C.duplicates += 1
        else:
            C.ids.add(hid)
        C.in_flight += 1
        if C.in_flight > C.max_in_flight:
            C.max_in_flight = C.in_flight
        self.busy = True
        if latency > 0:
            asyncio.get_running_loop().call_later(latency, self.respond, OK, close, True)
        else:
            self.respond(OK, close, True)

    def respond(self, data, close, counted):
        """Write an answer; a counted delivery is no longer in flight."""
        if counted:
            C.in_flight -= 1
            C.last = time.time()
        self.busy = False
        if self.transport is None:
            return						# the client went away meanwhile
        self.transport.write(data)
        if close:
            self.transport.close()
        elif self.buf:
            self.next_request()

    def fail(self, status):
        C.bad += 1
        if self.transport is not None:
            self.transport.write(answer(status, close=True))
            self.transport.close()
        self.buf.clear()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("port_file")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await loop.create_server(lambda: Http(args.latency_ms / 1000.0),
                                      "127.0.0.1", args.port, backlog=1024,
                                      reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, args.port_file)
    await stop
    server.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
