"""Echo servers for the benchmark, one per implementation: python servers.py IMPL PORT

The blocking-style ones (stacklessuv, gevent, eventlet, threads) are the same plain
socket code; the asyncio ones are the idiomatic streams and Protocol versions.
"""

import sys

IMPL, PORT = sys.argv[1], int(sys.argv[2])
ADDR = ("127.0.0.1", PORT)


def blocking_handler(socket_module):
    def handle(conn):
        conn.setsockopt(socket_module.IPPROTO_TCP, socket_module.TCP_NODELAY, 1)
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass
        conn.close()

    return handle


def serve_blocking(socket_module, spawn):
    srv = socket_module.create_server(ADDR, backlog=4096)
    handle = blocking_handler(socket_module)
    while True:
        conn, _ = srv.accept()
        spawn(handle, conn)


def stacklessuv_main():
    import stacklessuv as sl
    from stacklessuv import socket

    sl.tasklet(serve_blocking)(socket, lambda f, c: sl.tasklet(f)(c))
    sl.run()


def gevent_main():
    from gevent import monkey

    monkey.patch_all()
    import socket

    import gevent

    serve_blocking(socket, gevent.spawn)


def eventlet_main():
    import eventlet

    eventlet.monkey_patch()
    import socket

    serve_blocking(socket, eventlet.spawn_n)


def threads_main():
    import socket
    import threading

    def spawn(f, c):
        threading.Thread(target=f, args=(c,), daemon=True).start()

    serve_blocking(socket, spawn)


async def streams_server():
    import asyncio

    async def handle(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        writer.close()

    srv = await asyncio.start_server(handle, *ADDR, backlog=4096)
    await srv.serve_forever()


async def protocol_server():
    import asyncio

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Echo, *ADDR, backlog=4096)
    await srv.serve_forever()


def main():
    import asyncio

    if IMPL == "stacklessuv":
        stacklessuv_main()
    elif IMPL.startswith("gevent"):
        gevent_main()  # the loop is chosen by GEVENT_LOOP in the environment
    elif IMPL == "eventlet":
        eventlet_main()
    elif IMPL == "threads":
        threads_main()
    elif IMPL == "asyncio":
        asyncio.run(streams_server())
    elif IMPL == "uvloop-streams":
        import uvloop

        uvloop.run(streams_server())
    elif IMPL == "uvloop-protocol":
        import uvloop

        uvloop.run(protocol_server())
    else:
        sys.exit(f"unknown implementation {IMPL}")


if __name__ == "__main__":
    main()
