#!/usr/bin/env python3
"""Stand-in pods: for every pod matching a selector, a real HTTP server on <pod IP>:<port>
that answers with the pod's name (as the seed's serve_hostname image does).

The local control plane's pods are kwok fakes (their IPs are only data). Run this inside the
demo's network namespace: it adds each pod IP to a dummy interface there (`pods0`) and
serves on it, and removes both when the pod goes. It keeps serving pods that are not ready:
leaving the ready set is the proxy's business, not the pod's.

Usage: backends.py --namespace demo --selector app=hostnames --port 9376 [--interface pods0]
(kubectl and KUBECONFIG as for any kubectl call; needs NET_ADMIN for the addresses).
"""
import argparse
import http.server
import json
import subprocess
import sys
import threading
import time


def log(msg):
    print(f"backends: {msg}", file=sys.stderr, flush=True)


def pods(namespace, selector):
    out = subprocess.run(
        ["kubectl", "-n", namespace, "get", "pods", "-l", selector, "-o", "json"],
        capture_output=True, text=True, timeout=20,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    found = {}
    for pod in json.loads(out.stdout)["items"]:
        ip = pod.get("status", {}).get("podIP")
        if ip and pod.get("status", {}).get("phase") == "Running":
            found[ip] = pod["metadata"]["name"]
    return found


def serve(ip, port, name):
    body = (name + "\n").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((ip, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--selector", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interface", default="pods0")
    args = parser.parse_args()
    running = {}  # ip -> (name, server)
    while True:
        try:
            wanted = pods(args.namespace, args.selector)
        except Exception as error:  # the API may be briefly away; try again
            log(f"listing pods: {error}")
            time.sleep(1)
            continue
        for ip, (name, server) in list(running.items()):
            if wanted.get(ip) != name:
                server.shutdown()
                server.server_close()
                subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", args.interface],
                               capture_output=True)
                del running[ip]
                log(f"stopped {name} on {ip}:{args.port}")
        for ip, name in wanted.items():
            if ip in running:
                continue
            subprocess.run(["ip", "addr", "replace", f"{ip}/32", "dev", args.interface],
                           check=True, capture_output=True)
            try:
                running[ip] = (name, serve(ip, args.port, name))
                log(f"serving {name} on {ip}:{args.port}")
            except OSError as error:
                log(f"cannot serve {name} on {ip}:{args.port}: {error}")
        time.sleep(0.5)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
