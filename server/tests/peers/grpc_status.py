"""A gRPC client written with `grpcio` (PyPI, gRPC's C core), used by the
server's tests as a client that is not ours: it calls `bifrost.v1.Bifrost`
`Status` over TLS and prints the answer as one JSON line.

Usage: grpc_status.py PROTO_DIR HOST:PORT CA_PEM [CERT_PEM KEY_PEM]

With BIFROST_LOGIN=USER:PASSWORD in the environment it first logs in
(`Login`) and sends the session token as `authorization: Bearer TOKEN`
metadata on `Status` and `WhoAmI`; the JSON line then also says who the
server took the caller for ("user", "via").

The stubs are compiled from PROTO_DIR/bifrost.proto into a temporary
directory with grpcio-tools. The server is checked against CA_PEM; with
CERT_PEM and KEY_PEM the client presents that certificate. On an RPC error
it prints {"error": CODE_NAME, "details": TEXT} and exits 2.
"""

import importlib
import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc


def stubs(proto_dir, out_dir):
    """Compiles bifrost.proto; returns its message and service modules."""
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main([
        "protoc",
        f"-I{proto_dir}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        os.path.join(proto_dir, "bifrost.proto"),
    ])
    if rc != 0:
        sys.exit(f"protoc failed on {proto_dir}/bifrost.proto ({rc})")
    sys.path.insert(0, out_dir)
    return importlib.import_module("bifrost_pb2"), importlib.import_module("bifrost_pb2_grpc")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    proto_dir, target, ca = sys.argv[1], sys.argv[2], sys.argv[3]
    cert = read(sys.argv[4]) if len(sys.argv) > 5 else None
    key = read(sys.argv[5]) if len(sys.argv) > 5 else None
    with tempfile.TemporaryDirectory() as out:
        pb, pb_grpc = stubs(proto_dir, out)
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(ca), private_key=key, certificate_chain=cert
        )
        with grpc.secure_channel(target, creds) as channel:
            stub = pb_grpc.BifrostStub(channel)
            try:
                answer = call(pb, stub)
            except grpc.RpcError as e:
                print(json.dumps({"error": e.code().name, "details": e.details()}))
                sys.exit(2)
            print(json.dumps(answer))


def call(pb, stub):
    """Status (and WhoAmI after a login, if asked for) as one dict."""
    metadata = None
    login = os.environ.get("BIFROST_LOGIN")
    if login:
        user, password = login.split(":", 1)
        session = stub.Login(pb.LoginRequest(user=user, password=password), timeout=10)
        metadata = [("authorization", f"Bearer {session.token}")]
    status = stub.Status(pb.StatusRequest(), timeout=10, metadata=metadata)
    answer = {
        "node_id": status.node_id,
        "leader_id": status.leader_id,
        "members": [
            {"id": m.id, "addr": m.addr, "peer_addr": m.peer_addr}
            for m in status.members
        ],
    }
    if login:
        me = stub.WhoAmI(pb.WhoAmIRequest(), timeout=10, metadata=metadata)
        answer["user"] = me.user.name
        answer["via"] = me.via
    return answer


if __name__ == "__main__":
    main()
