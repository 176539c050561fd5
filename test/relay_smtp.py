#!/usr/bin/python3
#
# test/relay_smtp.py - an SMTP server for the relay's TAP tests
#
# Usage: relay_smtp.py PORT DIR
#
# Listens on 127.0.0.1:PORT (aiosmtpd) and writes every message it accepts
# into DIR as msg-N.json: {"mail_from", "rcpt_tos", "data"}, written to a
# temp name and renamed, so a reader never sees half a file.  Touches
# DIR/ready once it listens; runs until SIGTERM.
#
# Copyright (c) 2026, orderexp developers

import json
import os
import signal
import sys
import threading

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        tmp = os.path.join(self.directory, ".msg-%d.tmp" % n)
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.directory, "msg-%d.json" % n))
        return "250 Message accepted for delivery"


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Recorder(directory), hostname="127.0.0.1", port=port)
    controller.start()
    open(os.path.join(directory, "ready"), "w").close()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    controller.stop()


if __name__ == "__main__":
    main()
