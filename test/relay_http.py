#!/usr/bin/python3
#
# test/relay_http.py - a webhook receiver for the relay's TAP tests
#
# Usage: relay_http.py PORT DIR
#
# Listens on 127.0.0.1:PORT and records every request into DIR as
# req-N.json: {"method", "path", "headers", "body"} (temp name, then
# rename).  Answers with the status code written in DIR/status (200 when
# the file is missing), so a test switches it to 500 and back.  Touches
# DIR/ready once it listens; runs until SIGTERM.
#
# Copyright (c) 2026, orderexp developers

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIRECTORY = None
COUNT = 0
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: without this, Nagle's algorithm
    # and the client's delayed ACK hold every answer back by 40 ms
    disable_nagle_algorithm = True

    def do_POST(self):
        global COUNT
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        try:
            with open(os.path.join(DIRECTORY, "status")) as f:
                status = int(f.read().strip() or "200")
        except FileNotFoundError:
            status = 200
        with LOCK:
            COUNT += 1
            n = COUNT
        record = {
            "method": "POST",
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
            "status": status,
        }
        tmp = os.path.join(DIRECTORY, ".req-%d.tmp" % n)
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(DIRECTORY, "req-%d.json" % n))
        reply = b"ok\n" if status < 300 else b"failing on purpose\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, fmt, *args):
        pass


def main():
    global DIRECTORY
    port, DIRECTORY = int(sys.argv[1]), sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    open(os.path.join(DIRECTORY, "ready"), "w").close()
    server.serve_forever()


if __name__ == "__main__":
    main()
