"""A tiny gRPC server whose health service turns SERVING after a delay.

usage: grpc_health_server.py PORT DELAY_S [SERVICE]
"""

import sys
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

port, delay = int(sys.argv[1]), float(sys.argv[2])
service = sys.argv[3] if len(sys.argv) > 3 else ""

server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
server.add_insecure_port(f"127.0.0.1:{port}")
server.start()
print(f"listening on {port}, NOT_SERVING", flush=True)
time.sleep(delay)
servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
print("SERVING", flush=True)
server.wait_for_termination()
