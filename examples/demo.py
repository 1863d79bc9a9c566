"""Demo: blocking-style code running as tasklets on one libuv loop.

Part 1: tasklets sleep on timers, wait on a pipe, wait for a real OS thread and talk
over channels, all concurrently on one thread.
Part 2: a TCP echo server and 200 clients written with plain blocking socket calls
(stacklessuv.socket, a drop-in for the stdlib module), each client pausing between
round trips; the timings printed show them all running at once.
"""

import os
import threading
import time

import stacklessuv as s

T0 = time.monotonic()


def say(who, what):
    print(f"[{time.monotonic() - T0:6.3f}s] {who:<10} {what}", flush=True)


def sleeper(name, seconds, results):
    say(name, f"sleeps {seconds:.2f}s")
    s.sleep(seconds)
    say(name, "woke")
    results.send((name, seconds))


def pipe_reader(fd, results):
    say("reader", "waits for the pipe to become readable")
    s.wait_fd(fd)
    data = os.read(fd, 100)
    say("reader", f"read {data!r}")
    results.send(("reader", data))


def pipe_writer(fd):
    s.sleep(0.15)
    say("writer", "writes to the pipe")
    os.write(fd, b"hello through libuv")


def thread_waiter(results):
    answer = s.ThreadResult()

    def blocking_work():  # a real OS thread doing blocking work
        time.sleep(0.25)
        answer.set_result(sum(range(1_000_000)))

    threading.Thread(target=blocking_work).start()
    say("threaded", "waits for an OS thread")
    value = answer.wait()
    say("threaded", f"got {value} from the thread")
    results.send(("threaded", value))


def spinner(stop):
    spins = 0
    while not stop:
        spins += 1
        s.schedule()
    say("spinner", f"yielded {spins} times without starving anyone")


def main():
    results = s.channel()
    r, w = os.pipe()
    stop = []
    for i, seconds in enumerate((0.3, 0.1, 0.2)):
        s.tasklet(sleeper)(f"sleeper-{i}", seconds, results)
    s.tasklet(pipe_reader)(r, results)
    s.tasklet(pipe_writer)(w)
    s.tasklet(thread_waiter)(results)
    s.tasklet(spinner)(stop)

    got = [results.receive() for _ in range(5)]
    stop.append(True)
    s.run()
    os.close(r)
    os.close(w)
    elapsed = time.monotonic() - T0
    print()
    print(f"{len(got)} results in {elapsed:.2f}s on one thread;", end=" ")
    print("run one after the other they would take about 0.3+0.1+0.2+0.15+0.25 = 1.00s")


def echo_demo(clients=200, trips=5, pause=0.02):
    from stacklessuv import socket

    print(f"\n-- TCP: {clients} clients x {trips} round trips, {pause * 1000:.0f} ms apart --")
    server = socket.create_server(("127.0.0.1", 0), backlog=clients)
    host, port = server.getsockname()

    def handle(conn):
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data.upper())

    def serve():
        for _ in range(clients):
            conn, _ = server.accept()
            s.tasklet(handle)(conn)

    done = []

    def client(i):
        with socket.create_connection(("localhost", port)) as sock:
            for j in range(trips):
                sock.sendall(b"hello %d.%d" % (i, j))
                assert sock.recv(4096) == b"HELLO %d.%d" % (i, j)
                s.sleep(pause)
        done.append(i)

    t0 = time.monotonic()
    s.tasklet(serve)()
    for i in range(clients):
        s.tasklet(client)(i)
    s.run()
    server.close()
    elapsed = time.monotonic() - t0
    serial = clients * trips * pause
    print(f"{len(done)} clients finished {clients * trips} round trips in {elapsed:.2f}s;")
    print(f"one after the other, their pauses alone would take {serial:.0f}s")


if __name__ == "__main__":
    main()
    echo_demo()
