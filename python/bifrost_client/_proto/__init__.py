"""Generated protobuf and gRPC stubs of ``bifrost.v1.Bifrost`` (do not edit).

Regenerate with ``python python/tools/gen_proto.py``; ``tests/test_stubs.py``
fails when these files differ from what ``proto/proto/bifrost.proto`` gives.
"""
