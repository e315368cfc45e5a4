"""A storefront calling the gateway over gRPC: `python -m serving.proto.example_client [--target host:port]`.

Start the gateway first (`make serve` or `python -m serving`; gRPC listens on SERVING_GRPC_PORT, 50051).
Only grpcio, grpcio-health-checking and the generated stubs are needed on the client side.
"""

from __future__ import annotations

import argparse
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.proto import ensure_stubs

ensure_stubs()

from serving.proto import storefront_pb2 as pb  # noqa: E402  (generated just above when missing)
from serving.proto import storefront_pb2_grpc as pb_grpc  # noqa: E402


def shop_id(text: str) -> pb.Id:
    """The shop's ids are integers or strings; send them as they are in the catalogue."""
    return pb.Id(int_value=int(text)) if text.lstrip("-").isdigit() else pb.Id(string_value=text)


def show_id(msg: pb.Id) -> int | str:
    return getattr(msg, msg.WhichOneof("value"))


def with_retry(call, request, attempts: int = 3, timeout: float = 1.0):
    """Back off on RESOURCE_EXHAUSTED (the gateway's queue is full), as long as the gateway says (retry-after)."""
    for attempt in range(attempts):
        try:
            return call(request, timeout=timeout)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or attempt == attempts - 1:
                raise
            wait = dict(err.trailing_metadata() or ()).get("retry-after", "1")
            time.sleep(float(wait))
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="localhost:50051")
    parser.add_argument("--user", default="42", help="a user id of the catalogue (int or string)")
    parser.add_argument("--text", default="my card has not arrived yet")
    parser.add_argument("--timeout", type=float, default=1.0, help="deadline per call, seconds")
    args = parser.parse_args(argv)

    with grpc.insecure_channel(args.target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=args.timeout)
        print("health:", health_pb2.HealthCheckResponse.ServingStatus.Name(health.status))
        api = pb_grpc.StorefrontStub(channel)

        rec = with_retry(api.Recommend, pb.RecommendRequest(user_id=shop_id(args.user), k=5), timeout=args.timeout)
        kind = f"fallback ({rec.fallback_reason})" if rec.fallback else "personalised"
        print(f"recommend, {kind}, models {dict(rec.model_versions)}:")
        for item in rec.items:
            print(f"  {show_id(item.item_id)}  {item.score:.4f}")

        answer = with_retry(api.Intent, pb.IntentRequest(text=args.text), timeout=args.timeout).results[0]
        print(f"intent: {answer.intent} ({answer.confidence:.2f}), hand off to a human: {answer.handoff}")

        try:  # invalid input: the details name the field, as HTTP's 422 does
            api.Recommend(pb.RecommendRequest(user_id=shop_id(args.user), k=1000), timeout=args.timeout)
        except grpc.RpcError as err:
            print(f"k=1000 -> {err.code().name}: {err.details()}")


if __name__ == "__main__":
    main()
