"""An HTTP fan-out written for blocking sockets and OS threads, using only the stdlib.

A ThreadingHTTPServer (one thread per request) whose handler sleeps to stand in for a
slow backend, and many urllib clients, each on its own thread, each making a few
requests and checking every body. At the end it prints what happened: requests done,
errors, wall time, requests/s, peak RSS and how many OS threads the process used.

It imports nothing from stacklessuv. Run it as it is (real OS threads) or under the
patch (every thread a tasklet on one libuv loop):

    python examples/http_fanout.py
    python -m stacklessuv examples/http_fanout.py

examples/compare.py runs both and prints them side by side. With --json the last
line of output is the result as JSON (for compare.py).
"""

import argparse
import http.server
import json
import resource
import sys
import threading
import time
import urllib.request


class Handler(http.server.BaseHTTPRequestHandler):
    delay = 0.05  # seconds the "backend" takes per request

    def do_GET(self):
        note_thread()
        time.sleep(self.delay)  # the slow backend
        body = json.dumps({"path": self.path, "answer": len(self.path)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # one line per request would drown the summary


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen backlog: every client may connect at once


seen_threads = set()  # native ids of the OS threads that ran a handler or a client
peak_threads = [0]  # most OS threads the kernel counted in this process at any note


def os_threads_now():
    """The process's OS thread count, as the kernel sees it."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def note_thread():
    seen_threads.add(threading.get_native_id())
    peak_threads[0] = max(peak_threads[0], os_threads_now())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200, help="client threads")
    parser.add_argument("--requests", type=int, default=5, help="requests per client")
    parser.add_argument("--delay", type=float, default=0.05, help="backend seconds/request")
    parser.add_argument("--json", action="store_true", help="end with a JSON result line")
    args = parser.parse_args()
    Handler.delay = args.delay
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    server = Server(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    lock = threading.Lock()
    done = []
    errors = []
    note_thread()

    def client(i):
        note_thread()
        for j in range(args.requests):
            path = f"/item/{i}/{j}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
                    got = json.loads(r.read())
                if got != {"path": path, "answer": len(path)}:
                    raise ValueError(f"wrong body for {path}: {got!r}")
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
            else:
                with lock:
                    done.append(path)

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    server.shutdown()
    server.server_close()

    total = args.clients * args.requests
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "clients": args.clients,
        "requests": total,
        "ok": len(done),
        "errors": len(errors),
        "wall_s": round(wall, 3),
        "req_per_s": round(len(done) / wall, 1),
        "delay_ms": round(args.delay * 1000, 1),
        "serial_s": round(total * args.delay, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "rss_growth_mib": round(usage.ru_maxrss / 1024 - rss_start, 1),
        "peak_os_threads": peak_threads[0],
        "distinct_native_ids": len(seen_threads),
    }
    print(
        f"{args.clients} client threads x {args.requests} requests, handler sleeps "
        f"{args.delay * 1000:.0f} ms (one after the other: {result['serial_s']}s)"
    )
    print(f"  ok {result['ok']}/{total}, errors {result['errors']}")
    for e in sorted(set(errors))[:5]:
        print(f"    {errors.count(e)} x {e}")
    print(f"  wall {wall:.2f}s, {result['req_per_s']} requests/s")
    print(f"  CPU {result['cpu_s']}s (user+sys, whole process)")
    print(
        f"  peak RSS {result['peak_rss_mib']} MiB "
        f"({result['rss_growth_mib']} MiB more than before the server started)"
    )
    print(
        f"  OS threads: peak {result['peak_os_threads']} (/proc/self/status), "
        f"{result['distinct_native_ids']} distinct native ids ran clients and handlers"
    )
    if args.json:
        print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
