"""Ignores SIGTERM, then listens on PORT (so readiness implies the handler is installed)."""

import signal
import socket
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
print("ignoring SIGTERM, listening", flush=True)
time.sleep(300)
