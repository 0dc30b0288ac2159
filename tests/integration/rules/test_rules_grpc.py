"""rules/examples/grpc.yaml, verbatim, against a grpcio "shop" service (issue 16 item 4).

The example's services are generated in the test (``shop.proto``) and
served by grpcio behind ``reverse:h2c://``; each rule of the example must
change what a grpcio client sees as the example says.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import grpcsvc
from tests.support.proxyproc import ProxyProcess, start_proxy

ROOT = Path(__file__).resolve().parents[3]
SHOP = """
syntax = "proto3";
package shop;
message User { string name = 1; string role = 2; }
message GetUser { User user = 1; }
message Charge { int32 cents = 1; }
message Receipt { string id = 1; }
message Watch { int32 count = 1; }
message Order { int32 index = 1; }
message Chunk { bytes data = 1; }
message Uploaded { int32 size = 1; }
service Payments { rpc Charge(shop.Charge) returns (Receipt); }
service Users { rpc Get(GetUser) returns (User); }
service Orders {
  rpc WatchOrders(Watch) returns (stream Order);
  rpc Upload(stream Chunk) returns (Uploaded);
}
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, ProxyProcess]]:
    gen = grpcsvc.build(tmp_path_factory.mktemp("shop"), SHOP, "shop")
    pb2, rpc = gen.pb2, gen.grpc

    class Payments(rpc.PaymentsServicer):  # type: ignore[name-defined,misc]
        def Charge(self, request: Any, context: Any) -> Any:
            return pb2.Receipt(id=f"r{request.cents}")

    class Users(rpc.UsersServicer):  # type: ignore[name-defined,misc]
        def Get(self, request: Any, context: Any) -> Any:
            tagged = dict(context.invocation_metadata()).get("x-test-user") == "1"
            return pb2.User(
                name=request.user.name, role=request.user.role + ("+tagged" if tagged else "")
            )

    class Orders(rpc.OrdersServicer):  # type: ignore[name-defined,misc]
        def WatchOrders(self, request: Any, context: Any) -> Iterator[Any]:
            for i in range(request.count):
                yield pb2.Order(index=i)

        def Upload(self, requests: Iterator[Any], context: Any) -> Any:
            return pb2.Uploaded(size=sum(len(c.data) for c in requests))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    rpc.add_PaymentsServicer_to_server(Payments(), server)
    rpc.add_UsersServicer_to_server(Users(), server)
    rpc.add_OrdersServicer_to_server(Orders(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    p = start_proxy(
        "--mode", f"reverse:h2c://127.0.0.1:{port}",
        "--rules", str(ROOT / "rules" / "examples/grpc.yaml"),  # the example, verbatim
        "--proto-path", str(gen.directory / "shop.proto"),
    )  # fmt: skip
    channel = grpc.insecure_channel(f"127.0.0.1:{p.port}")
    try:
        yield (gen, channel), p
    finally:
        channel.close()
        p.stop()
        server.stop(None)


def test_a_share_of_charges_fails(shop: tuple[Any, ProxyProcess]) -> None:
    (gen, channel), _ = shop
    stub = gen.grpc.PaymentsStub(channel)
    failed = 0
    for i in range(60):
        try:
            assert stub.Charge(gen.pb2.Charge(cents=i), timeout=10).id == f"r{i}"
        except grpc.RpcError:
            failed += 1
    assert 1 <= failed <= 30  # percent: 20


def test_test_user_renamed_tagged_and_delayed(shop: tuple[Any, ProxyProcess]) -> None:
    (gen, channel), _ = shop
    stub = gen.grpc.UsersStub(channel)
    user = gen.pb2.User
    start = time.monotonic()
    admin = stub.Get(gen.pb2.GetUser(user=user(name="ann", role="admin")), timeout=10)
    took = time.monotonic() - start
    other = stub.Get(gen.pb2.GetUser(user=user(name="bob", role="dev")), timeout=10)
    assert (admin.name, admin.role) == ("tester", "admin+tagged")
    assert (other.name, other.role) == ("bob", "dev+tagged")
    assert took >= 0.25  # the first response message waits 250 ms


def test_the_second_update_is_lost(shop: tuple[Any, ProxyProcess]) -> None:
    (gen, channel), _ = shop
    orders = gen.grpc.OrdersStub(channel).WatchOrders(gen.pb2.Watch(count=4), timeout=10)
    assert [o.index for o in orders] == [0, 2, 3]


def test_uploads_are_cancelled(shop: tuple[Any, ProxyProcess]) -> None:
    (gen, channel), _ = shop
    with pytest.raises(grpc.RpcError) as info:
        gen.grpc.OrdersStub(channel).Upload(iter([gen.pb2.Chunk(data=b"x")]), timeout=10)
    assert info.value.code() is grpc.StatusCode.CANCELLED
