#!/usr/bin/env python3
"""A TCP receiver that reads and discards (or keeps) everything, for `saltship --target`.

saltship counts a batch as delivered only after it shut down its write side and saw our
EOF, then opens a new connection for the next batch. So this server accepts in a loop,
reads each connection to EOF and only then closes it (closing earlier, with data unread,
would reset the connection and make saltship resend).

    python3 discard.py PORT_FILE [PORT [KEEP_FILE]]

Listens on 127.0.0.1 on PORT, or a port chosen by the kernel, and writes that port to
PORT_FILE once it is accepting (the caller waits for the file). With KEEP_FILE it appends
what it reads there, written before it closes a connection, so what saltship counts as
delivered is in the file even if this receiver is killed (faults.sh kills it on purpose). On SIGTERM/SIGINT it prints
`connections=N bytes=M` to stdout and exits 0, so the caller can check bytes arrived.
"""
import asyncio
import os
import signal
import sys


class Discard(asyncio.Protocol):
    """Drops what it reads; closes once the peer has finished sending."""

    stats = {"connections": 0, "bytes": 0}

    def connection_made(self, transport):
        self.stats["connections"] += 1

    keep = None

    def data_received(self, data):
        self.stats["bytes"] += len(data)
        if self.keep is not None:
            self.keep.write(data)
            self.keep.flush()

    def eof_received(self):
        return False  # False: asyncio closes the transport, which is our EOF to saltship


async def main(port_file, port=0, keep_file=None):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    if keep_file:
        Discard.keep = open(keep_file, "ab")
    server = await loop.create_server(Discard, "127.0.0.1", port, backlog=128)
    port = server.sockets[0].getsockname()[1]
    # Write then rename, so the caller never reads a half-written port number.
    tmp = port_file + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{port}\n")
    os.replace(tmp, port_file)
    async with server:
        await stop
    print(f"connections={Discard.stats['connections']} bytes={Discard.stats['bytes']}", flush=True)


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 4:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0, *sys.argv[3:]))
