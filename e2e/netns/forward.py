#!/usr/bin/env python3
"""A tiny TCP forwarder: listen on LISTEN (ip:port), connect each client to TARGET (ip:port).

The demo's network namespace cannot reach the API server, which listens on 127.0.0.1 of the
root namespace only; this runs in the root namespace on the root side of the veth pair and
carries the TLS bytes through unchanged (the certificate is checked end to end by the client,
with tls-server-name: localhost). Usage: forward.py LISTEN TARGET
"""
import asyncio
import sys


def split(addr):
    host, _, port = addr.rpartition(":")
    return host, int(port)


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def main(listen, target):
    async def handle(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))
        for writer in (client_writer, up_writer):
            writer.close()

    server = await asyncio.start_server(handle, *listen, reuse_address=True)
    print(f"forwarding {listen[0]}:{listen[1]} -> {target[0]}:{target[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: forward.py LISTEN_IP:PORT TARGET_IP:PORT")
    try:
        asyncio.run(main(split(sys.argv[1]), split(sys.argv[2])))
    except KeyboardInterrupt:
        pass
