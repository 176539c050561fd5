#!/usr/bin/python3
#
# test/relay_smtp.py - an SMTP server for the relay's TAP tests
#
# Usage: relay_smtp.py PORT DIR [auth]
#
# Listens on 127.0.0.1:PORT (aiosmtpd) and writes every message it accepts
# into DIR as msg-N.json: {"mail_from", "rcpt_tos", "data"}, written to a
# temp name and renamed, so a reader never sees half a file.  Touches
# DIR/ready once it listens; runs until SIGTERM.  It never offers STARTTLS.
#
# With "auth", it offers AUTH without TLS (as a careless or hostile server
# would), accepts any login and records each as auth-N.json: {"mechanism",
# "login", "password"}.
#
# A recipient whose address starts with "nobody@" is refused with "550 5.1.1
# no such user", as a server refuses a mailbox that does not exist; one that
# starts with "busy@" with "451 4.2.1 mailbox busy, try again later", a
# refusal for now.
#
# Copyright (c) 2026, orderexp developers

import json
import os
import signal
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Recorder:
    def __init__(self, directory):
        self.directory = directory
        self.counts = {}
        self.lock = threading.Lock()

    # DIR/PREFIX-N.json, N counting from 1 per prefix
    def write(self, prefix, record):
        with self.lock:
            self.counts[prefix] = self.counts.get(prefix, 0) + 1
            n = self.counts[prefix]
        tmp = os.path.join(self.directory, ".%s-%d.tmp" % (prefix, n))
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.directory, "%s-%d.json" % (prefix, n)))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("busy@"):
            return "451 4.2.1 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.write("msg", {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        })
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.write("auth", {
            "mechanism": mechanism,
            "login": auth_data.login.decode("utf-8", "replace"),
            "password": auth_data.password.decode("utf-8", "replace"),
        })
        return AuthResult(success=True)


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    recorder = Recorder(directory)
    if sys.argv[3:] == ["auth"]:
        controller = Controller(recorder, hostname="127.0.0.1", port=port,
                                auth_require_tls=False,
                                authenticator=recorder.authenticate)
    else:
        controller = Controller(recorder, hostname="127.0.0.1", port=port)
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
