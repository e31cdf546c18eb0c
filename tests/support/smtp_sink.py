"""The suite's SMTP catcher: an aiosmtpd server on 127.0.0.1 that accepts every message and
writes it, parsed, to <dir>/<recipient>/<sequence>.json (one file per recipient, written
whole before the 250 answer, so a test that got its HTTP answer finds the mail already there).

Each file holds: mail_from, rcpt_tos, headers ([name, value] pairs, decoded), subject,
content_type, text and html (the decoded parts, or null) and raw (the message as received).
Started by tests/api/support/servers/smtp.rs; stops on SIGTERM.

    python smtp_sink.py --port 2525 --dir /tmp/mail
"""

import argparse
import asyncio
import email
import email.policy
import itertools
import json
import os
import signal

from aiosmtpd.smtp import SMTP


def folder_name(address):
    """The recipient's folder: the address, lower-cased, with nothing that leaves the dir."""
    safe = "".join(c if c.isalnum() or c in "@.-_+" else "_" for c in address.lower())
    return safe.lstrip(".") or "_"


class Sink:
    def __init__(self, directory):
        self.directory = directory
        # One sequence for the whole run, so names sort in arrival order.
        self.sequence = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": [[name, str(value)] for name, value in message.items()],
            "subject": str(message.get("subject", "")),
            "content_type": message.get_content_type(),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
            "raw": raw.decode("utf-8", "replace"),
        }
        for recipient in envelope.rcpt_tos:
            folder = os.path.join(self.directory, folder_name(recipient))
            os.makedirs(folder, exist_ok=True)
            number = next(self.sequence)
            temporary = os.path.join(folder, f".{number:06}.tmp")
            with open(temporary, "w", encoding="utf-8") as out:
                json.dump(record, out, ensure_ascii=False)
            os.replace(temporary, os.path.join(folder, f"{number:06}.json"))
        return "250 OK: caught"


async def serve(port, directory):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Sink(directory), hostname="aidlc-test-smtp"),
        host="127.0.0.1",
        port=port,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"smtp sink listening on 127.0.0.1:{port}, writing to {directory}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    asyncio.run(serve(args.port, args.dir))


if __name__ == "__main__":
    main()
