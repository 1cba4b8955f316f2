"""A provider endpoint that answers as fast as this machine allows, in a process of its own, for the hot-path
benchmark (bench/hotpath.py): asyncio, HTTP/1.1 keep-alive, TCP_NODELAY, a fixed 202 reply.

Every POST but Slack's is recorded as (the number at the end of its "dedup_key", CLOCK_MONOTONIC when its body
was read); that clock is the same in every process of this machine, so the sender compares it with its own commit
times. `GET /take` hands over what was recorded since the last take.

    python -m bench.receiver PORT_FILE     # writes the port it listens on to PORT_FILE
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import time
from pathlib import Path

REPLY = b'{"status":"success","message":"Event processed","dedup_key":"bench"}'
KEY = re.compile(rb'"dedup_key"\s*:\s*"[^"]*?(\d+)"')


def main() -> None:
    port_file = Path(sys.argv[1])
    records: list[tuple[int, float]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if head.startswith(b"GET /take"):
                    taken, records[:] = list(records), []
                    payload = json.dumps(taken).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                 + str(len(payload)).encode() + b"\r\n\r\n" + payload)
                elif head.startswith(b"POST /slack"):  # an incoming webhook answers 200 "ok"
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
                else:
                    at = time.monotonic()
                    found = KEY.search(body)
                    records.append((int(found.group(1)) if found else -1, at))
                    writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: "
                                 + str(len(REPLY)).encode() + b"\r\n\r\n" + REPLY)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def run() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
        port_file.write_text(str(server.sockets[0].getsockname()[1]))
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
